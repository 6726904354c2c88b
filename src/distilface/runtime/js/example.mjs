// The web kit end to end in Node, as csrc/dfanimate.c does it in C: mono 16-bit little-endian PCM
// on stdin at any rate (resampled to 16 kHz inside the module), frames as CSV on stdout
// (frame, time_s, one column per curve), each as soon as its audio has arrived.
//
//   ffmpeg -i speech.wav -f s16le -ac 1 -ar 48000 - | node example.mjs model.dfn 30 48000 > curves.csv
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { WasmModel } from "./distilface.js";

const [dfn, fpsArg = "30", rateArg = "16000", smoothArg] = process.argv.slice(2);
const fps = Number(fpsArg), rateHz = Number(rateArg);
if (!dfn || !(fps > 0) || !Number.isInteger(rateHz) || (smoothArg && smoothArg !== "smooth")) {
  console.error("usage: node example.mjs MODEL.dfn [FPS=30] [RATE_HZ=16000] [smooth] < audio.s16le > frames.csv");
  process.exit(2);
}
process.stdout.on("error", (e) => process.exit(e.code === "EPIPE" ? 0 : 1)); // piped into `head`
try {
  const wasm = readFileSync(new URL("distilface.wasm", import.meta.url));
  const model = await WasmModel.fromBytes(wasm, readFileSync(dfn), { name: basename(dfn, ".dfn") });
  const stream = model.stream(fps, rateHz, smoothArg === "smooth");
  const lines = [`frame,time_s,${model.names.join(",")}`];
  let k = 0;
  const write = (frames) => {
    for (const f of frames) lines.push(`${k},${(k / fps).toFixed(6)},${Array.from(f, (v) => v.toPrecision(7)).join(",")}`), k++;
    process.stdout.write(lines.join("\n") + "\n");
    lines.length = 0;
  };
  let odd = null; // a byte of a sample split between two reads
  for await (let chunk of process.stdin) {
    if (odd) chunk = Buffer.concat([odd, chunk]);
    const n = chunk.length >> 1;
    odd = chunk.length & 1 ? chunk.subarray(chunk.length - 1) : null;
    const samples = new Float32Array(n);
    for (let i = 0; i < n; i++) samples[i] = chunk.readInt16LE(2 * i) / 32768;
    write(stream.push(samples));
  }
  write(stream.finish());
  stream.free();
} catch (e) {
  console.error(`example: ${e.message}`);
  process.exit(1);
}
