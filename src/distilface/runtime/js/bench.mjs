// `distilface bench runtime`'s WebAssembly row (distilface.runtime.bench): the student in
// distilface.wasm timed in Node as bench.py times the other runtimes.
// Usage: node bench.mjs SPEC.json, SPEC = {wasm, dfn, clip, long, fps, frames}: clip and long are
// files of float32 samples at 16 kHz. Prints JSON {frame_ms: [...], offline: {audio_s, compute_s,
// frames, rtf}}:
//   frame_ms  streaming, one frame's worth of the clip per push (pushes alternate between floor
//             and ceil of 16000 / fps samples, on the frame grid), a push that completes k frames
//             counted k times at a k-th of its time, the clip restarted (stream reset) at its end;
//   offline   all of `long` in one-second pushes, as the viewer animates a file.
import { readFileSync } from "node:fs";
import { WasmModel } from "./distilface.js";

const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));
const f32 = (path) => {
  const b = readFileSync(path);
  return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
};
const model = await WasmModel.fromBytes(readFileSync(spec.wasm), readFileSync(spec.dfn), { name: "bench" });
const clip = f32(spec.clip), perFrame = 16000 / spec.fps;
const stream = model.stream(spec.fps);
const frameMs = [];
for (let i = 0, k = 0; frameMs.length < spec.frames;) {
  if (i >= clip.length) {
    stream.reset();
    i = 0;
    k = 0;
  }
  const j = Math.min(Math.round((k + 1) * perFrame), clip.length);
  const t0 = performance.now();
  const out = stream.push(clip.subarray(i, j));
  const dt = performance.now() - t0;
  for (let n = 0; n < out.length; n++) frameMs.push(dt / out.length);
  i = j;
  k++;
}
stream.free();
const long = f32(spec.long);
const { frames, msPerFrame } = await model.animate(long, spec.fps);
const computeS = (msPerFrame * frames.length) / 1000;
console.log(JSON.stringify({ frame_ms: frameMs.slice(0, spec.frames),
  offline: { audio_s: long.length / 16000, compute_s: computeS, frames: frames.length, rtf: long.length / 16000 / computeS } }));
