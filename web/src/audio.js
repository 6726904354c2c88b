// Audio in the page, as mono Float32Array.
//
// Files: decodeAudioData of an OfflineAudioContext at the rate asked for (`decodeAt`). At the
// file's own rate (WAV and FLAC declare it: `declaredRateHz`) nothing is resampled and the samples
// are the file's, which the WebAssembly runtime resamples to 16 kHz as Python's resample_poly
// does; at any other rate the browser's own resampler runs, whose samples differ slightly.
// Channels are averaged, as distilface.audio.mix_to_mono does.
// Microphone: an AudioContext at the device's rate (or at 16 kHz, where the browser resamples)
// and an AudioWorklet that posts each 128-sample render quantum to the page.
import { SAMPLE_RATE_HZ } from "./infer.js";

/** The sample rate in a WAV's "fmt " chunk or a FLAC's STREAMINFO, else null (other formats). */
export function declaredRateHz(arrayBuffer) {
  const b = new Uint8Array(arrayBuffer), v = new DataView(arrayBuffer), tag = (at) => String.fromCharCode(...b.subarray(at, at + 4));
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

/** The file decoded to mono at rateHz (16 kHz by default). */
export async function decodeAt(arrayBuffer, rateHz = SAMPLE_RATE_HZ) {
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

const WORKLET = `
registerProcessor("distilface-tap", class extends AudioWorkletProcessor {
  process(inputs) {
    const ch = inputs[0];
    if (ch && ch.length) {
      const mono = new Float32Array(ch[0].length);
      for (const c of ch) for (let i = 0; i < mono.length; i++) mono[i] += c[i] / ch.length;
      this.port.postMessage(mono, [mono.buffer]);
    }
    return true;
  }
});`;

export class Microphone {
  /** onSamples(Float32Array at this.rateHz) is called per 128-sample block; rateHz: the context's
   *  rate, null for the device's own (nothing resampled by the browser). */
  async start(onSamples, rateHz = SAMPLE_RATE_HZ) {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    this.ctx = new AudioContext(rateHz ? { sampleRate: rateHz, latencyHint: "interactive" } : { latencyHint: "interactive" });
    this.rateHz = this.ctx.sampleRate;
    const url = URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" }));
    try {
      await this.ctx.audioWorklet.addModule(url);
    } finally {
      URL.revokeObjectURL(url);
    }
    this.node = new AudioWorkletNode(this.ctx, "distilface-tap");
    this.node.port.onmessage = (e) => onSamples(e.data);
    this.ctx.createMediaStreamSource(this.stream).connect(this.node);
    return this;
  }

  async stop() {
    this.stream?.getTracks().forEach((t) => t.stop());
    this.node?.disconnect();
    await this.ctx?.close();
    this.stream = this.ctx = this.node = null;
  }
}
