// The viewer page of `distilface view`: the face driven by curves in one of three modes
//   clip     an audio file and its curves (`distilface animate`), played in sync
//   live     frames from `distilface stream --output ws`
//   browser  microphone or file -> the student in the browser -> face, no server involved: the C
//            runtime as WebAssembly where the server built it (distilface.js), else onnxruntime-web
// plus a model selector, the model's latency and a scrolling plot of mouth curves.
// `window.distilface` is a small hook for tests and scripting (see the end of this file).
import { Microphone } from "./audio.js";
import { Face } from "./face.js";
import { fetchOk, LiveAnimator, SAMPLE_RATE_HZ, WindowModel } from "./infer.js";
import { LiveClient } from "./live.js";
import { decodeFor, decodeMono, WasmModel } from "../../src/distilface/runtime/js/distilface.js"; // the web kit's module too
import { CurvePlot } from "./plot.js";
import { Track } from "./track.js";

const MODES = ["clip", "live", "browser"];
const DELAY_WINDOW = 30; // frames averaged for the live delay shown
const $ = (id) => document.getElementById(id);

const state = {
  mode: "clip",
  config: null,
  fps: 30,
  modelName: null,
  meta: null, // /models/NAME.json of the selected model
  model: null, // Promise<WasmModel | WindowModel>, loaded on first use
  runtime: null, // "wasm" or "onnxruntime-web": forced with ?runtime=onnx, else wasm where served
  clip: { track: null, pinnedS: null, fromServer: true },
  live: { client: null, track: null, frames: 0, ended: null, delaysMs: [], latencyMs: null, lookaheadMs: null },
  browser: { source: null, track: null, mic: null, animator: null, msPerFrame: null, frames: 0, runtime: null, rateHz: null },
};
let face, plot;

// -- status lines -------------------------------------------------------------------------------

function status(mode, text) {
  $(`${mode}-status`).textContent = text;
}

function fail(mode, err) {
  console.error(err);
  status(mode, `error: ${err.message ?? err}`);
}

function showLatency() {
  const m = state.meta;
  if (!m) return;
  const model = `${m.name}: ${m.future_ms} ms future context, a frame needs ${m.lookahead_ms.toFixed(1)} ms of audio after it`;
  let text = model;
  if (state.mode === "live") {
    const l = state.live;
    text = l.lookaheadMs == null ? "live: no stream yet"
      : `stream: lookahead ${l.lookaheadMs.toFixed(1)} ms + server ${l.latencyMs.toFixed(1)} ms + delivery ` +
        `${mean(l.delaysMs).toFixed(1)} ms`;
  } else if (state.mode === "browser" && state.browser.msPerFrame != null) {
    text = `${model}; ${state.browser.runtime} ${state.browser.msPerFrame.toFixed(2)} ms per frame`;
  }
  $("latency").textContent = text;
}

const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

// -- model --------------------------------------------------------------------------------------

async function selectModel(name) {
  const meta = await (await fetchOk(`models/${encodeURIComponent(name)}.json`)).json();
  state.modelName = name;
  state.meta = meta;
  state.model = null;
  $("model").value = name;
  showLatency();
  if (state.config.clip && state.clip.fromServer) await loadServerClip();
  if (state.browser.mic) await startMic(); // restart with the new model
}

function getModel() {
  if (!state.model) {
    const meta = state.meta;
    const wasm = meta.wasm && meta.dfn && state.runtime !== "onnx";
    state.model = wasm
      ? WasmModel.load(meta.wasm, meta.dfn, meta).catch((e) => {
        console.warn(`${meta.name}: the WebAssembly runtime failed (${e.message}); using onnxruntime-web`);
        return WindowModel.load(meta.onnx, meta);
      })
      : WindowModel.load(meta.onnx, meta);
    state.model.catch(() => { state.model = null; });
  }
  return state.model;
}

// -- mode 1: clip -------------------------------------------------------------------------------

async function loadServerClip() {
  const clip = state.config.clip;
  const curves = await (await fetchOk(`${clip.curves}?model=${encodeURIComponent(state.modelName)}`)).json();
  state.clip.track = Track.fromJSON(curves);
  state.clip.fromServer = true;
  const audio = $("clip-audio");
  if (!audio.src.endsWith(clip.audio)) {
    audio.src = clip.audio;
    await new Promise((resolve, reject) => {
      audio.addEventListener("loadedmetadata", resolve, { once: true });
      audio.addEventListener("error", () => reject(new Error(`${clip.audio}: cannot play`)), { once: true });
    });
  }
  status("clip", `${clip.name}: ${state.clip.track.frames.length} frames at ${curves.fps} fps from ${state.modelName}`);
}

async function openClipFiles() {
  const audioFile = $("clip-audio-file").files[0], curvesFile = $("clip-curves-file").files[0];
  if (audioFile) {
    $("clip-audio").src = URL.createObjectURL(audioFile);
    state.clip.fromServer = false;
  }
  if (curvesFile) {
    state.clip.track = Track.fromJSON(JSON.parse(await curvesFile.text()));
    state.clip.fromServer = false;
  } else if (audioFile) {
    state.clip.track = null; // the served clip's curves do not belong to this audio
  }
  const t = state.clip.track;
  status("clip", `${audioFile?.name ?? "audio"} with ${curvesFile?.name ?? "curves"}: ${t ? t.frames.length : 0} frames` +
    (audioFile && !curvesFile ? " (open its curves too, or use 'In the browser' to compute them)" : ""));
}

// -- mode 2: live -------------------------------------------------------------------------------

function connectLive(url) {
  const l = state.live;
  l.client?.close();
  l.frames = 0;
  l.ended = null;
  l.delaysMs = [];
  l.client = new LiveClient(url, {
    onStatus: (text) => status("live", text),
    onStart: (m) => {
      l.track = new Track(m.fps, m.names);
      l.lookaheadMs = m.lookahead_ms;
      l.latencyMs = 0;
      status("live", `stream ${m.stream} from ${m.source}: ${m.fps} fps`);
    },
    onFrame: (m, delayMs) => {
      if (!l.track) l.track = new Track(l.client.fps, l.client.names);
      l.track.push(l.track.names.map((n) => m.blendshapes[n] ?? 0));
      l.frames++;
      l.latencyMs = m.latency_ms;
      l.lookaheadMs = m.lookahead_ms;
      l.delaysMs.push(delayMs);
      if (l.delaysMs.length > DELAY_WINDOW) l.delaysMs.shift();
      if (l.frames % 10 === 0) {
        status("live", `stream ${m.stream}: frame ${m.frame} at ${m.time_s.toFixed(2)} s, delivery ${delayMs.toFixed(1)} ms`);
        showLatency();
      }
    },
    onEnd: (m) => {
      l.ended = m;
      status("live", `stream ${m.stream} ended (${m.reason}): ${m.frames} frames, ${l.frames} received`);
      showLatency();
    },
  });
}

// -- mode 3: in the browser ---------------------------------------------------------------------

async function animateInBrowser(arrayBuffer) {
  const model = await getModel();
  // the WebAssembly runtime resamples as Python does: decoded at the file's own rate where it says
  const { samples: audio, rateHz } = model.runtime === "wasm" ? await decodeFor(model, arrayBuffer)
    : { samples: await decodeMono(arrayBuffer, SAMPLE_RATE_HZ), rateHz: SAMPLE_RATE_HZ };
  const out = await model.animate(audio, state.fps, (done, n) => status("browser", `frame ${done} / ${n}`), rateHz);
  state.browser.runtime = model.runtime;
  return { track: new Track(state.fps, model.names, out.frames), msPerFrame: out.msPerFrame, samples: audio.length,
    rateHz, runtime: model.runtime };
}

async function openBrowserFile() {
  const file = $("browser-file").files[0];
  if (!file) return;
  const b = state.browser;
  Object.assign(b, { source: null, frames: 0 }); // until this file's frames are in (before any await)
  await stopMic();
  const { track, msPerFrame, rateHz } = await animateInBrowser(await file.arrayBuffer());
  Object.assign(b, { source: "file", track, msPerFrame, rateHz, frames: track.frames.length });
  const el = $("browser-audio");
  el.hidden = false;
  el.src = URL.createObjectURL(file);
  status("browser", `${file.name}: ${track.frames.length} frames, ${b.runtime} ${msPerFrame.toFixed(2)} ms per frame`);
  showLatency();
  await el.play().catch(() => {});
}

async function startMic() {
  await stopMic();
  const b = state.browser;
  const model = await getModel();
  b.animator = null;
  b.runtime = model.runtime;
  b.track = new Track(state.fps, model.names);
  b.source = "mic";
  b.frames = 0;
  const pump = async () => {
    if (!b.animator) return; // stopped
    const { frames, ms } = await b.animator.pull();
    if (!frames.length) return;
    frames.forEach((f) => b.track.push(f));
    b.frames += frames.length;
    b.msPerFrame = ms / frames.length;
    if (b.frames % 15 < frames.length) {
      status("browser", `microphone: ${b.frames} frames, ${b.msPerFrame.toFixed(2)} ms per frame`);
      showLatency();
    }
  };
  // the WebAssembly runtime takes the device's rate (resampled in C as in Python); onnxruntime-web 16 kHz
  const onSamples = (samples) => {
    if (!b.animator) return; // a block that arrives before the animator below
    b.animator.push(samples);
    pump().catch((e) => fail("browser", e));
  };
  b.mic = await new Microphone().start(onSamples, model.liveAnimator ? null : SAMPLE_RATE_HZ);
  if (model.liveAnimator && !model.supportsRate(b.mic.rateHz)) {
    await b.mic.stop();
    b.mic = await new Microphone().start(onSamples, SAMPLE_RATE_HZ);
  }
  b.animator = model.liveAnimator ? model.liveAnimator(state.fps, b.mic.rateHz) : new LiveAnimator(model, state.fps);
  b.rateHz = b.mic.rateHz;
  $("mic-toggle").textContent = "Stop microphone";
  status("browser", `microphone at ${b.mic.rateHz} Hz: frames appear ${(b.animator.lookaheadSamples / 16).toFixed(0)} ms after the sound`);
}

async function stopMic() {
  const b = state.browser;
  if (!b.mic) return;
  await b.mic.stop();
  b.mic = null;
  const animator = b.animator;
  b.animator = null; // blocks still queued are dropped
  animator?.free?.(); // the WebAssembly stream's memory
  $("mic-toggle").textContent = "Start microphone";
}

// -- the page -----------------------------------------------------------------------------------

function setMode(mode) {
  if (!MODES.includes(mode)) throw new Error(`unknown mode ${mode}`);
  state.mode = mode;
  for (const b of document.querySelectorAll("#modes button")) b.setAttribute("aria-selected", String(b.dataset.mode === mode));
  for (const p of document.querySelectorAll("[data-panel]")) p.hidden = p.dataset.panel !== mode;
  if (mode !== "clip") $("clip-audio").pause();
  showLatency();
}

/** What the face shows now: {track, tS, future} for the current mode. */
function current() {
  if (state.mode === "clip") {
    const audio = $("clip-audio");
    const pinned = state.clip.pinnedS;
    return { track: state.clip.track, tS: audio.paused && pinned != null ? pinned : audio.currentTime, future: true };
  }
  const t = state.mode === "live" ? state.live.track : state.browser.track;
  if (state.mode === "browser" && state.browser.source === "file") {
    return { track: t, tS: $("browser-audio").currentTime, future: true };
  }
  return { track: t, tS: t && t.frames.length ? (t.frames.length - 1) / t.fps : 0, future: false };
}

const scratch = new WeakMap();
function draw() {
  const { track, tS, future } = current();
  if (track) {
    if (!scratch.has(track)) scratch.set(track, new Float32Array(track.names.length));
    face.setWeights(track.names, track.at(tS, scratch.get(track)));
  }
  plot.draw(track, tS, future);
  face.render();
}

function loop() {
  draw();
  requestAnimationFrame(loop);
}

const nextFrames = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));

async function init() {
  const params = new URLSearchParams(location.search);
  state.config = await (await fetchOk("config.json")).json();
  state.fps = Number(params.get("fps") ?? state.config.fps ?? 30);
  state.runtime = params.get("runtime");
  face = new Face($("face"));
  plot = new CurvePlot($("plot"), $("legend"));
  const faceLoaded = face.load(state.config.face);

  const select = $("model");
  for (const m of state.config.models) {
    const o = document.createElement("option");
    o.value = m.name;
    o.textContent = `${m.name} (${m.future_ms} ms future)`;
    select.append(o);
  }
  select.addEventListener("change", () => selectModel(select.value).catch((e) => fail(state.mode, e)));
  for (const b of document.querySelectorAll("#modes button")) b.addEventListener("click", () => setMode(b.dataset.mode));
  $("live-url").value = params.get("ws") ?? state.config.live_url;
  $("live-connect").addEventListener("click", () => connectLive($("live-url").value));
  $("clip-audio-file").addEventListener("change", () => openClipFiles().catch((e) => fail("clip", e)));
  $("clip-curves-file").addEventListener("change", () => openClipFiles().catch((e) => fail("clip", e)));
  $("browser-file").addEventListener("change", () => openBrowserFile().catch((e) => fail("browser", e)));
  $("mic-toggle").addEventListener("click", () =>
    (state.browser.mic ? stopMic() : startMic()).catch((e) => fail("browser", e)));
  const clipAudio = $("clip-audio");
  clipAudio.addEventListener("play", () => { state.clip.pinnedS = null; });
  clipAudio.addEventListener("seeked", () => {
    if (state.clip.pinnedS != null && Math.abs(clipAudio.currentTime - state.clip.pinnedS) > 0.05) state.clip.pinnedS = null;
  });

  setMode(params.get("mode") ?? state.config.mode ?? "clip");
  await selectModel(params.get("model") ?? state.config.default_model);
  await faceLoaded;
  loop();
  if (state.mode === "live") connectLive($("live-url").value); // start the stream first (or press Connect)
}

// -- the hook -----------------------------------------------------------------------------------

const ready = init().catch((e) => {
  fail(state.mode, e);
  throw e;
});

window.distilface = {
  ready,
  setMode,
  selectModel,
  /** Clip mode at time tS (paused): resolves, once drawn, to the weights shown. */
  async seek(tS) {
    setMode("clip");
    const audio = $("clip-audio");
    audio.pause();
    audio.currentTime = tS;
    state.clip.pinnedS = tS;
    draw();
    await nextFrames();
    return face.weights();
  },
  async play() {
    setMode("clip");
    await $("clip-audio").play();
  },
  pause: () => $("clip-audio").pause(),
  clipTime: () => $("clip-audio").currentTime,
  /** The student in the browser on an audio URL (default: the served clip) -> curves JSON, msPerFrame, runtime. */
  async inferClip(url) {
    const buf = await (await fetchOk(url ?? state.config.clip.audio)).arrayBuffer();
    const { track, msPerFrame, samples, rateHz, runtime } = await animateInBrowser(buf);
    status("browser", `${track.frames.length} frames, ${runtime} ${msPerFrame.toFixed(2)} ms per frame`);
    return { ...track.toJSON(), msPerFrame, samples, rateHz, runtime };
  },
  connectLive(url) {
    setMode("live");
    connectLive(url ?? $("live-url").value);
  },
  live: () => ({ frames: state.live.frames, ended: state.live.ended, lookaheadMs: state.live.lookaheadMs,
    delayMs: mean(state.live.delaysMs), lastFrame: state.live.track?.frames.at(-1) ? Array.from(state.live.track.frames.at(-1)) : null }),
  /** Mode 3's state; withCurves: also its curves as JSON. */
  browser: (withCurves = false) => {
    const b = state.browser;
    return { source: b.source, frames: b.frames, msPerFrame: b.msPerFrame, mic: Boolean(b.mic), runtime: b.runtime,
      rateHz: b.rateHz,
      curves: withCurves && b.track ? b.track.toJSON() : null };
  },
  mouthRect: () => face.mouthRect(),
  weights: () => face.weights(),
  state: () => ({ mode: state.mode, model: state.modelName, meta: state.meta, clipFrames: state.clip.track?.frames.length ?? 0,
    latency: $("latency").textContent }),
};
