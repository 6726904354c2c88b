// @met4citizen/headaudio offline: node headaudio.mjs [--fps 60] [--rate R] FILE...
//
// Runs the package's own code as a browser app would: its audio processor (modules/processor.mjs,
// what the AudioWorklet runs) receives the audio in 128-sample render quanta, and its HeadAudio
// node (modules/headaudio.mjs) receives the processor's messages and animates the 15 Oculus viseme
// weights in `update(dt)`, called once per animation frame. Two shims stand in for the browser:
// AudioWorkletNode (a message port wired to the in-process processor) and fetch() of the model
// file. The AudioContext runs at the file's rate (16 kHz here: the processor works at 16 kHz,
// so it does not resample); processor and node use their default parameters, and no silence
// calibration is run (the README makes it an app step; without it the model's own silence
// prototypes decide).
//
// Output, one JSON line per file: {file, tool, version, rate, fps, names, frames, active,
// process_ms}. frames[k] are the weights (names order) that `onvalue` had set when animation
// frame k, at time k / fps, was drawn; active[k] is the node's active viseme then ("viseme_sil"
// when none); process_ms is the time spent in the processor and in update().

import { pathToFileURL } from "node:url";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { elapsedMs, main, packageVersion, readAudio } from "./audio.mjs";

const PACKAGE = "@met4citizen/headaudio";
const RENDER_QUANTUM = 128;  // samples per AudioWorklet process() call (Web Audio API)

class PortShim {
  constructor() { this.onmessage = null; this.deliver = null; }
  postMessage(data) { this.deliver(data); }
}

globalThis.AudioWorkletNode = class {
  constructor(context) { this.context = context; this.port = new PortShim(); this.parameters = new Map(); }
};

const realFetch = globalThis.fetch;
globalThis.fetch = async (url, ...rest) => {
  const s = String(url);
  if (!s.startsWith("file:")) return realFetch(url, ...rest);
  const bytes = readFileSync(new URL(s));
  return { ok: true, status: 200, statusText: "OK",
           arrayBuffer: async () => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) };
};

const { HeadAudio } = await import(`${PACKAGE}/modules/headaudio.mjs`);
const { Processor } = await import(`${PACKAGE}/modules/processor.mjs`);
const MODEL_URL = pathToFileURL(createRequire(import.meta.url).resolve(`${PACKAGE}/dist/model-en-mixed.bin`)).href;
const VERSION = packageVersion(PACKAGE);

async function analyse(file, { fps, rate }) {
  const audio = readAudio(file, rate);
  const node = new HeadAudio({ sampleRate: audio.rate });
  const processor = new Processor({ sampleRate: audio.rate, processorOptions: {}, parameterData: {} },
                                  { port: { postMessage: (data) => node.port.onmessage({ data }) } });
  node.port.deliver = (data) => processor._onmessage({ data });
  await node.loadModel(MODEL_URL);

  const names = node.visemeNames;
  const index = Object.fromEntries(names.map((n, i) => [n, i]));
  const weights = new Array(names.length).fill(0);
  node.onvalue = (key, value) => { weights[index[key]] = value; };

  const frameMs = 1000 / fps;
  const numFrames = Math.ceil(audio.samples.length / audio.rate * fps - 1e-9);
  const frames = [];
  const active = [];
  let fed = 0;
  const start = process.hrtime.bigint();
  for (let k = 0; k < numFrames; k++) {
    // the audio thread has processed every render quantum that ended by this frame's time
    const until = Math.min(Math.floor(k / fps * audio.rate / RENDER_QUANTUM) * RENDER_QUANTUM,
                           audio.samples.length - audio.samples.length % RENDER_QUANTUM);
    for (; fed < until; fed += RENDER_QUANTUM) {
      processor.process(audio.samples.subarray(fed, fed + RENDER_QUANTUM));
    }
    node.update(frameMs);
    frames.push(weights.slice());
    active.push(node.visemeActive < 0 ? "viseme_sil" : names[node.visemeActive]);
  }
  return { tool: PACKAGE, version: VERSION, rate: audio.rate, fps, names, frames, active,
           process_ms: elapsedMs(start) };
}

await main({ fps: 60, rate: 0 }, analyse);
