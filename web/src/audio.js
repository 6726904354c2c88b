// Audio in the page, always as mono Float32Array at 16 kHz (the students' rate).
//
// Files: decodeAudioData of a 16 kHz OfflineAudioContext, which resamples with the browser's own
// resampler (not Python's resample_poly: for other rates frames differ slightly from `animate`;
// at 16 kHz nothing is resampled and the samples are the file's). Channels are averaged, as
// distilface.audio.mix_to_mono does.
// Microphone: an AudioContext running at 16 kHz (the browser resamples the device) and an
// AudioWorklet that posts each 128-sample render quantum to the page.
import { SAMPLE_RATE_HZ } from "./infer.js";

export async function decode16k(arrayBuffer) {
  const ctx = new OfflineAudioContext({ numberOfChannels: 1, length: 1, sampleRate: SAMPLE_RATE_HZ });
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
  /** onSamples(Float32Array at 16 kHz) is called per 128-sample block (8 ms). */
  async start(onSamples) {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    this.ctx = new AudioContext({ sampleRate: SAMPLE_RATE_HZ, latencyHint: "interactive" });
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
