// Stream raw float32 audio through the WebAssembly runtime (src/distilface/runtime/js/distilface.js)
// in Node: the test of tests/test_wasm.py and the timings of scripts/wasm_speed.py.
// Usage: node wasm_stream.mjs SPEC.json, SPEC = {wasm, dfn, audio, out, fps, rateHz, smooth,
// chunks}: audio a file of float32 samples at rateHz, pushed in `chunks` sizes taken in turn; `out` receives the frames as float32 (frames x outputs).
// Prints {names, frames, lookaheadSamples, streamMs} as JSON (streamMs: the pushes and the finish,
// not loading), or the error's message on stderr with exit status 1.
import { readFileSync, writeFileSync } from "node:fs";
import { WasmModel } from "../src/distilface/runtime/js/distilface.js";

const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));
try {
  const model = await WasmModel.fromBytes(readFileSync(spec.wasm), readFileSync(spec.dfn), { name: "m" });
  const buf = readFileSync(spec.audio);
  const audio = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const stream = model.stream(spec.fps, spec.rateHz, spec.smooth);
  const frames = [];
  const t0 = performance.now();
  for (let at = 0, i = 0; at < audio.length; i++) {
    const n = spec.chunks[i % spec.chunks.length];
    frames.push(...stream.push(audio.subarray(at, at + n)));
    at += n;
  }
  frames.push(...stream.finish());
  const streamMs = performance.now() - t0;
  stream.free();
  const out = new Float32Array(frames.length * model.outputs);
  frames.forEach((f, i) => out.set(f, i * model.outputs));
  writeFileSync(spec.out, out);
  console.log(JSON.stringify({ names: model.names, frames: frames.length, lookaheadSamples: model.lookaheadSamples, streamMs }));
} catch (e) {
  console.error(e.message);
  process.exit(1);
}
