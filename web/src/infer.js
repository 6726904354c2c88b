// The student in onnxruntime-web: the windowed graph of `distilface export` (window
// (N, window_samples) of 16 kHz audio -> curves (N, outputs)), one window per frame.
//
// Frames are those of Python's offline `distilface.animate.animate_audio`: frame k shows time
// k / fps, its window starts at round(k * 16000 / fps) - past_samples (`frame_starts`, rounding
// half to even as torch.round does), samples before 0 and after the end are zeros, and there are
// ceil(seconds * fps - 1e-9) frames (`distilface.curves.num_frames`).
import * as ort from "onnxruntime-web/wasm";

export const SAMPLE_RATE_HZ = 16000;
const BATCH_WINDOWS = 32; // windows per session.run: 32 x 8192 floats = 1 MiB of input

ort.env.wasm.numThreads = 1; // threads need a cross-origin-isolated page; one is plenty for a frame
ort.env.wasm.wasmPaths = new URL("ort/", document.baseURI).href; // served beside app.js, never a CDN
ort.env.logLevel = "error";

/** Math.round rounds halves up; torch.round (and numpy) round them to even. */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** distilface.curves.num_frames: frames covering `samples` of 16 kHz audio. */
export function numFrames(samples, fps) {
  return Math.max(Math.ceil((samples / SAMPLE_RATE_HZ) * fps - 1e-9), 0);
}

/** distilface.student.frame_starts: first sample of frame k's window. */
export function frameStart(k, fps, pastSamples) {
  return roundHalfEven((k * SAMPLE_RATE_HZ) / fps) - pastSamples;
}

export class WindowModel {
  /** meta: the model's entry of /models/NAME.json (names, window_samples, past_samples, span_samples). */
  constructor(session, meta) {
    if (meta.graph !== "windowed") throw new Error(`${meta.name}: the browser runs the windowed graph, got ${meta.graph}`);
    this.session = session;
    this.meta = meta;
    this.runtime = "onnxruntime-web";
    this.names = meta.names;
    this.windowSamples = meta.window_samples;
    this.pastSamples = meta.past_samples;
    this.spanSamples = meta.span_samples; // a frame reads only [start, start + span) of its window
    this.input = session.inputNames[0];
    this.output = session.outputNames[0];
  }

  static async load(url, meta) {
    const bytes = await (await fetchOk(url)).arrayBuffer();
    const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    return new WindowModel(session, meta);
  }

  /** windows: Float32Array of n windows back to back -> Float32Array (n, outputs). */
  async run(windows, n) {
    const feeds = { [this.input]: new ort.Tensor("float32", windows, [n, this.windowSamples]) };
    const out = await this.session.run(feeds);
    return out[this.output].data;
  }

  /** The window of frame k from `audio` (16 kHz), whose sample 0 is absolute sample `offset`
   *  and which holds `audio.length` samples; zeros outside. */
  fillWindow(dst, audio, start, offset = 0) {
    dst.fill(0);
    const from = Math.max(start - offset, 0), to = Math.min(start - offset + this.windowSamples, audio.length);
    if (to > from) dst.set(audio.subarray(from, to), from - (start - offset));
  }

  /** Offline: the whole of `audio` (Float32Array, 16 kHz) -> {frames: Float32Array[], msPerFrame}. */
  async animate(audio, fps, onProgress = () => {}) {
    const n = numFrames(audio.length, fps);
    const frames = [];
    const t0 = performance.now();
    const windows = new Float32Array(BATCH_WINDOWS * this.windowSamples);
    for (let k0 = 0; k0 < n; k0 += BATCH_WINDOWS) {
      const m = Math.min(BATCH_WINDOWS, n - k0);
      for (let j = 0; j < m; j++) {
        this.fillWindow(windows.subarray(j * this.windowSamples, (j + 1) * this.windowSamples), audio,
          frameStart(k0 + j, fps, this.pastSamples));
      }
      const out = await this.run(m === BATCH_WINDOWS ? windows : windows.slice(0, m * this.windowSamples), m);
      for (let j = 0; j < m; j++) frames.push(out.slice(j * this.names.length, (j + 1) * this.names.length));
      onProgress(frames.length, n);
    }
    return { frames, msPerFrame: n ? (performance.now() - t0) / n : 0 };
  }
}

/** Live: push 16 kHz audio of any length; `pull()` runs every frame whose context has arrived.
 *  Keeps only the audio later frames still read. */
export class LiveAnimator {
  constructor(model, fps) {
    this.model = model;
    this.fps = fps;
    this.reset();
  }

  reset() {
    this.buffer = new Float32Array(0); // audio from absolute sample `offset` on
    this.offset = 0;
    this.received = 0;
    this.nextFrame = 0;
    this.busy = false;
  }

  /** Samples after a frame's time that must arrive before it can be computed. */
  get lookaheadSamples() {
    return this.model.spanSamples - this.model.pastSamples;
  }

  push(samples) {
    const grown = new Float32Array(this.buffer.length + samples.length);
    grown.set(this.buffer);
    grown.set(samples, this.buffer.length);
    this.buffer = grown;
    this.received += samples.length;
  }

  /** -> {first, frames: Float32Array[], ms} for the frames now ready (none while a run is in flight). */
  async pull() {
    if (this.busy) return { first: this.nextFrame, frames: [], ms: 0 };
    const m = this.model, starts = [];
    for (let k = this.nextFrame; frameStart(k, this.fps, m.pastSamples) + m.spanSamples <= this.received; k++) {
      starts.push(frameStart(k, this.fps, m.pastSamples));
    }
    if (!starts.length) return { first: this.nextFrame, frames: [], ms: 0 };
    this.busy = true;
    try {
      const windows = new Float32Array(starts.length * m.windowSamples);
      starts.forEach((s, j) => m.fillWindow(windows.subarray(j * m.windowSamples, (j + 1) * m.windowSamples),
        this.buffer.subarray(0, this.received - this.offset), s, this.offset));
      const t0 = performance.now();
      const out = await m.run(windows, starts.length);
      const ms = performance.now() - t0;
      const first = this.nextFrame;
      this.nextFrame += starts.length;
      const keepFrom = Math.max(frameStart(this.nextFrame, this.fps, m.pastSamples), this.offset);
      this.buffer = this.buffer.slice(keepFrom - this.offset);
      this.offset = keepFrom;
      const frames = starts.map((_, j) => out.slice(j * m.names.length, (j + 1) * m.names.length));
      return { first, frames, ms };
    } finally {
      this.busy = false;
    }
  }
}

export async function fetchOk(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status} ${await r.text()}`);
  return r;
}
