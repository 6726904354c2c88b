// Audio in the page, as mono Float32Array.
//
// Files are decoded by distilface.js: `decodeMono` at 16 kHz for onnxruntime-web (the browser's
// resampler, whose samples differ slightly from resample_poly's), `decodeFor` at the file's own
// rate for the WebAssembly runtime, which resamples in C.
// Microphone: an AudioContext at the device's rate (or at 16 kHz, where the browser resamples)
// and an AudioWorklet that posts each 128-sample render quantum to the page.
import { SAMPLE_RATE_HZ } from "./infer.js";

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
