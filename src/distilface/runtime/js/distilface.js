// DistilFace's C runtime compiled to WebAssembly (distilface.wasm, built by
// distilface.runtime.wasm from src/distilface/runtime/csrc), for browsers and Node: the student
// streams with cached encoder state, one call per push, as `NativeModel` runs it in Python.
// The browser viewer runs it (docs/viewer.md) and the web engine kit ships it
// (`distilface export --native -o kit/M.dfn --engine-kit --kit-target web`, docs/engines.md).
// Frames equal Python's offline `animate_audio` within 1e-4 (tests/test_wasm.py in Node,
// tests/test_view.py in Chromium).
//
//   const model = await WasmModel.load("distilface.wasm", "model.dfn");
//   const stream = model.stream(30, audioContext.sampleRate);  // resampled to 16 kHz inside
//   for (const frame of stream.push(samples)) ...               // Float32Array of model.names.length
//
// Memory: the model (.dfn) is copied into the module's heap once; audio and frames go through two
// heap buffers grown on demand. Views of the heap are re-made after every call that may grow it.

const WASI_ENOSYS = 52;
const ERRORS = { "-1": "ABI mismatch", "-2": "audio too short", "-3": "frame index outside the steps",
  "-4": "out of memory", "-5": "stream state out of order", "-6": "sample rate not supported", "-7": "bad argument" };
const ABI = 4; // DF_ABI of dfstep.h
const PUSH_SAMPLES = 16000; // offline: one second per call

export class WasmModel {
  /** wasmBytes, dfnBytes: ArrayBuffers; meta: the model's /models/NAME.json entry (or {name}). */
  static async fromBytes(wasmBytes, dfnBytes, meta = {}) {
    const module = await WebAssembly.compile(wasmBytes);
    const imports = {};
    for (const imp of WebAssembly.Module.imports(module)) {
      // wasi-libc's stdio declares these; nothing the page calls reaches them
      if (imp.kind === "function") (imports[imp.module] ??= {})[imp.name] = () => WASI_ENOSYS;
    }
    const { exports } = await WebAssembly.instantiate(module, imports);
    if (exports.df_abi() !== ABI) throw new Error(`distilface.wasm speaks ABI ${exports.df_abi()}, this page ${ABI}`);
    const name = meta.name ?? "model";
    const bytes = new Uint8Array(dfnBytes);
    const data = alloc(exports, bytes.length), label = cString(exports, `${name}.dfn`), err = alloc(exports, 512);
    new Uint8Array(exports.memory.buffer, data, bytes.length).set(bytes);
    const handle = exports.df_model_load_memory(data, bytes.length, label, err, 512);
    const message = readString(exports, err);
    [data, label, err].forEach((p) => exports.free(p));
    if (!handle) throw new Error(message);
    return new WasmModel(exports, handle, meta);
  }

  static async load(wasmUrl, dfnUrl, meta) {
    const [w, d] = await Promise.all([wasmUrl, dfnUrl].map(async (u) => (await fetchOk(u)).arrayBuffer()));
    return WasmModel.fromBytes(w, d, meta);
  }

  constructor(exports, handle, meta) {
    this.x = exports;
    this.handle = handle;
    this.meta = meta;
    this.runtime = "wasm";
    this.outputs = exports.df_model_outputs(handle);
    this.names = Array.from({ length: this.outputs }, (_, i) => readString(exports, exports.df_model_name(handle, i)));
    this.lookaheadSamples = exports.df_model_lookahead_samples(handle);
  }

  /** A stream at fps of audio at rateHz (resampled in the module); smooth: ensemble smoothing. */
  stream(fps, rateHz = 16000, smooth = false) {
    return new WasmStream(this, fps, rateHz, smooth);
  }

  /** Whether a stream takes audio at rateHz (1 kHz to 384 kHz, ratio to 16 kHz in terms up to 8000). */
  supportsRate(rateHz) {
    try {
      this.stream(30, rateHz).free();
      return true;
    } catch {
      return false;
    }
  }

  /** Offline: the whole of `audio` (Float32Array at rateHz) -> {frames: Float32Array[], msPerFrame}. */
  async animate(audio, fps, onProgress = () => {}, rateHz = 16000) {
    const s = this.stream(fps, rateHz);
    const frames = [];
    const t0 = performance.now();
    try {
      const push = Math.round((PUSH_SAMPLES * rateHz) / 16000);
      for (let i = 0; i < audio.length; i += push) {
        frames.push(...s.push(audio.subarray(i, i + push)));
        onProgress(frames.length, Math.ceil((audio.length / rateHz) * fps - 1e-9));
      }
      frames.push(...s.finish());
    } finally {
      s.free();
    }
    return { frames, msPerFrame: frames.length ? (performance.now() - t0) / frames.length : 0 };
  }

  /** For live input at rateHz: push/pull as `LiveAnimator` (infer.js) offers it. */
  liveAnimator(fps, rateHz = 16000) {
    return new WasmLiveAnimator(this, fps, rateHz);
  }
}

class WasmStream {
  constructor(model, fps, rateHz, smooth) {
    const x = model.x;
    this.model = model;
    this.rateHz = rateHz;
    let weights = 0;
    if (smooth) {
      weights = alloc(x, 12);
      new Float32Array(x.memory.buffer, weights, 3).set([0.25, 0.5, 0.25]);
    }
    this.handle = x.df_model_stream(model.handle, fps, weights);
    if (weights) x.free(weights);
    if (!this.handle) throw new Error(`${model.meta.name ?? "model"}: cannot stream at ${fps} fps`);
    const r = x.df_stream_set_input_rate(this.handle, rateHz);
    if (r < 0) {
      x.df_stream_free(this.handle); // the stream is not returned: nothing else would free it
      this.handle = 0;
      throw new Error(`cannot stream ${rateHz} Hz audio: ${ERRORS[r] ?? r}`);
    }
    this.audioPtr = 0;
    this.audioCap = 0;
    this.framesCap = 64; // frames per call; more wait in the stream for the next call
    this.framesPtr = 0;
    try {
      this.framesPtr = alloc(x, 4 * this.framesCap * model.outputs);
    } catch (e) {
      this.free();
      throw e;
    }
  }

  /** Float32Array of samples -> the frames they complete (Float32Array each). */
  push(samples) {
    this._live();
    const x = this.model.x;
    if (samples.length > this.audioCap) {
      if (this.audioPtr) x.free(this.audioPtr);
      this.audioPtr = this.audioCap = 0;
      this.audioPtr = alloc(x, 4 * samples.length);
      this.audioCap = samples.length;
    }
    new Float32Array(x.memory.buffer, this.audioPtr, samples.length).set(samples);
    return this._call(this.audioPtr, samples.length, 0);
  }

  /** The end of the audio: the last frames. */
  finish() {
    const out = [];
    for (let got; (got = this._call(0, 0, 1)).length;) out.push(...got);
    return out;
  }

  reset() {
    this._live();
    this.model.x.df_stream_reset(this.handle);
  }

  /** Frees the stream's memory in the module; a second call does nothing, and any other call
   * after it throws (the memory may belong to another stream by then). */
  free() {
    if (!this.handle) return;
    const x = this.model.x;
    x.df_stream_free(this.handle);
    if (this.audioPtr) x.free(this.audioPtr);
    if (this.framesPtr) x.free(this.framesPtr);
    this.handle = this.audioPtr = this.framesPtr = 0;
  }

  _live() {
    if (!this.handle) throw new Error("stream: used after free()");
  }

  _call(ptr, n, final) {
    this._live();
    const x = this.model.x, k = this.model.outputs, out = [];
    for (let first = true; ; first = false) {
      // BigInt: df_stream_push takes int64 counts
      const got = Number(x.df_stream_push(this.handle, first ? ptr : 0, BigInt(first ? n : 0), final,
        this.framesPtr, BigInt(this.framesCap)));
      if (got < 0) throw new Error(`stream: ${ERRORS[got] ?? got}`);
      const view = new Float32Array(x.memory.buffer, this.framesPtr, got * k);
      for (let f = 0; f < got; f++) out.push(view.slice(f * k, (f + 1) * k));
      if (got < this.framesCap || final) return out; // a full buffer: more may be waiting
    }
  }
}

/** Live input: `push` keeps samples, `pull` runs them through the stream (one call) and returns
 *  the frames they complete, as `LiveAnimator` of infer.js does with onnxruntime-web. */
export class WasmLiveAnimator {
  constructor(model, fps, rateHz) {
    this.model = model;
    this.fps = fps;
    this.stream = model.stream(fps, rateHz);
    this.pending = [];
    this.nextFrame = 0;
  }

  get lookaheadSamples() {
    return this.model.lookaheadSamples;
  }

  reset() {
    this.stream.reset();
    this.pending = [];
    this.nextFrame = 0;
  }

  free() {
    this.stream.free();
  }

  push(samples) {
    this.pending.push(samples);
  }

  async pull() {
    const n = this.pending.reduce((a, s) => a + s.length, 0), audio = new Float32Array(n);
    let at = 0;
    for (const s of this.pending) { audio.set(s, at); at += s.length; }
    this.pending = [];
    const t0 = performance.now();
    const frames = n ? this.stream.push(audio) : [];
    const first = this.nextFrame;
    this.nextFrame += frames.length;
    return { first, frames, ms: performance.now() - t0 };
  }
}

/** malloc in the module, or an error: a null pointer would make the next write land on address 0. */
function alloc(x, bytes) {
  const p = x.malloc(bytes);
  if (!p) throw new Error(`distilface.wasm: out of memory (${bytes} bytes)`);
  return p;
}

function cString(x, text) {
  const bytes = new TextEncoder().encode(text), p = alloc(x, bytes.length + 1);
  new Uint8Array(x.memory.buffer, p, bytes.length + 1).set([...bytes, 0]);
  return p;
}

function readString(x, p) {
  if (!p) return "";
  const heap = new Uint8Array(x.memory.buffer);
  let end = p;
  while (heap[end]) end++;
  return new TextDecoder().decode(heap.subarray(p, end));
}

async function fetchOk(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status} ${await r.text()}`);
  return r;
}

/** The sample rate in a WAV's "fmt " chunk or a FLAC's STREAMINFO (an ArrayBuffer of the file),
 *  else null (other formats). Decoding at that rate leaves the samples as the file has them. */
export function declaredRateHz(arrayBuffer) {
  const b = new Uint8Array(arrayBuffer), v = new DataView(arrayBuffer);
  const tag = (at) => String.fromCharCode(...b.subarray(at, at + 4));
  if (b.length >= 12 && tag(0) === "RIFF" && tag(8) === "WAVE") {
    for (let at = 12; at + 16 <= b.length; at += 8 + v.getUint32(at + 4, true) + (v.getUint32(at + 4, true) & 1)) {
      if (tag(at) === "fmt ") return v.getUint32(at + 12, true) || null;
    }
    return null;
  }
  if (b.length >= 21 && tag(0) === "fLaC" && (b[4] & 0x7f) === 0) { // first metadata block: STREAMINFO
    return ((b[18] << 12) | (b[19] << 4) | (b[20] >> 4)) || null;
  }
  return null;
}

/** Browsers: an audio file (ArrayBuffer) decoded to mono at rateHz by an OfflineAudioContext
 *  (channels averaged, as distilface.audio.mix_to_mono does). */
export async function decodeMono(arrayBuffer, rateHz) {
  const ctx = new OfflineAudioContext({ numberOfChannels: 1, length: 1, sampleRate: rateHz });
  const buffer = await ctx.decodeAudioData(arrayBuffer);
  const mono = new Float32Array(buffer.length);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const ch = buffer.getChannelData(c);
    for (let i = 0; i < mono.length; i++) mono[i] += ch[i];
  }
  if (buffer.numberOfChannels > 1) for (let i = 0; i < mono.length; i++) mono[i] /= buffer.numberOfChannels;
  return mono;
}

/** Browsers: an audio file for `model` -> {samples, rateHz}: at the rate a WAV or FLAC declares
 *  (resampled inside the module as Python's resample_poly does), else 16 kHz by the browser. */
export async function decodeFor(model, arrayBuffer) {
  let rateHz = declaredRateHz(arrayBuffer);
  if (!rateHz || !model.supportsRate(rateHz)) rateHz = 16000;
  return { samples: await decodeMono(arrayBuffer, rateHz), rateHz };
}
