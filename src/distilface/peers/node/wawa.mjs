// wawa-lipsync offline: node wawa.mjs [--fps 60] [--rate R] FILE...
//
// Runs the package's Lipsync class as its README and example app use it: the audio plays through
// a Web Audio AnalyserNode, and once per animation frame the app calls `processAudio()` and reads
// `viseme` (one Oculus viseme) and `state`. Node has no Web Audio, so this file implements the
// pieces the class touches (webaudio.mjs: AudioContext and an AnalyserNode that follows the
// specification), at the AudioContext rate of the file (pass 48 kHz audio for what a typical
// browser does): the analyser reads the last fftSize samples of the render quanta played by the
// frame's time, and performance.now() is the frame's time.
//
// The package outputs one viseme per frame; a face needs weights. Its example app
// (examples/lipsync-demo, Avatar.jsx, "Smooth Movements" on) moves each viseme morph target
// every frame with THREE.MathUtils.lerp(current, target, speed): the active viseme towards 1
// at speed 0.2 while state is "vowel" and 0.4 otherwise, every other viseme towards 0 at 0.1
// ("vowel") or 0.2. frames[k] are those weights at frame k (time k / fps); active[k] the
// package's viseme. process_ms covers the analyser, processAudio() and the smoothing.

import { elapsedMs, main, packageVersion, readAudio } from "./audio.mjs";
import { AudioContext } from "./webaudio.mjs";

const PACKAGE = "wawa-lipsync";
let nowMs = 0;  // performance.now() and the AudioContext's clock: the animation frame's time
Object.defineProperty(globalThis, "performance", { value: { now: () => nowMs }, configurable: true, writable: true });
let clip = null;  // { samples, rate } of the file being analysed
globalThis.window = { AudioContext: class extends AudioContext { constructor() { super(clip.samples, clip.rate, () => nowMs); } } };

const { Lipsync, VISEMES } = await import(PACKAGE);
const VERSION = packageVersion(PACKAGE);
const NAMES = Object.values(VISEMES);
const LERP = { vowel: { active: 0.2, other: 0.1 }, other: { active: 0.4, other: 0.2 } };

async function analyse(file, { fps, rate }) {
  clip = readAudio(file, rate);
  nowMs = 0;
  const lipsync = new Lipsync();
  lipsync.connectAudio({ src: file });

  const weights = new Array(NAMES.length).fill(0);
  const numFrames = Math.ceil(clip.samples.length / clip.rate * fps - 1e-9);
  const frames = [];
  const active = [];
  const start = process.hrtime.bigint();
  for (let k = 0; k < numFrames; k++) {
    nowMs = 1000 * k / fps;
    lipsync.processAudio();
    const speed = lipsync.state === "vowel" ? LERP.vowel : LERP.other;
    for (let i = 0; i < NAMES.length; i++) {
      const target = NAMES[i] === lipsync.viseme ? 1 : 0;
      weights[i] += (target - weights[i]) * (target ? speed.active : speed.other);
    }
    frames.push(weights.slice());
    active.push(lipsync.viseme);
  }
  return { tool: PACKAGE, version: VERSION, rate: clip.rate, fps, names: NAMES, frames, active,
           process_ms: elapsedMs(start) };
}

await main({ fps: 60, rate: 0 }, analyse);
