// The parts of the Web Audio API that wawa-lipsync touches, for offline use in Node: an
// AudioContext that "plays" one in-memory clip in 128-sample render quanta against a clock the
// caller sets, and an AnalyserNode computed as the specification says ("AnalyserNode" ->
// "FFT Windowing and smoothing over time"):
//
//   x     the last fftSize samples of the quanta played so far (zeros before the clip starts)
//   w[n]  Blackman window, alpha 0.16: a0 - a1 cos(2 pi n / N) + a2 cos(4 pi n / N)
//   X[k]  (1 / N) sum_n w[n] x[n] e^(-2 pi i k n / N),  k < N / 2
//   S[k]  tau S_prev[k] + (1 - tau) |X[k]|  (smoothingTimeConstant tau = 0.8; once per quantum)
//   byte  floor(255 / (maxDecibels - minDecibels) * (20 log10 S[k] - minDecibels)), clipped to 0..255
//         (minDecibels -100, maxDecibels -30)

export const RENDER_QUANTUM = 128;  // samples per render quantum
const BLACKMAN_ALPHA = 0.16;

/** In-place radix-2 FFT of (re, im); the length must be a power of two. */
export function fft(re, im) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = -2 * Math.PI / len;
    for (let i = 0; i < n; i += len) {
      for (let k = 0; k < len / 2; k++) {
        const wr = Math.cos(ang * k), wi = Math.sin(ang * k);
        const a = i + k, b = a + len / 2;
        const xr = re[b] * wr - im[b] * wi, xi = re[b] * wi + im[b] * wr;
        re[b] = re[a] - xr; im[b] = im[a] - xi;
        re[a] += xr; im[a] += xi;
      }
    }
  }
}

export class AnalyserNode {
  constructor(context) {
    this.context = context;
    this.fftSize = 2048;
    this.smoothingTimeConstant = 0.8;
    this.minDecibels = -100;
    this.maxDecibels = -30;
    this.smoothed = null;
    this.computedAt = -1;  // played samples when `smoothed` was last computed
  }

  get frequencyBinCount() { return this.fftSize / 2; }

  connect() {}

  /** Smoothed magnitudes S[k], computed at most once per render quantum. */
  frequencyData() {
    const played = this.context.playedSamples();
    const n = this.fftSize;
    if (this.smoothed && this.smoothed.length === n / 2 && this.computedAt === played) return this.smoothed;
    if (!this.smoothed || this.smoothed.length !== n / 2) this.smoothed = new Float64Array(n / 2);
    const re = new Float64Array(n), im = new Float64Array(n);
    const x = this.context.samples;
    const a0 = (1 - BLACKMAN_ALPHA) / 2, a1 = 0.5, a2 = BLACKMAN_ALPHA / 2;
    for (let i = 0; i < n; i++) {
      const at = played - n + i;
      const w = a0 - a1 * Math.cos(2 * Math.PI * i / n) + a2 * Math.cos(4 * Math.PI * i / n);
      re[i] = at >= 0 && at < x.length ? x[at] * w : 0;
    }
    fft(re, im);
    const tau = this.smoothingTimeConstant;
    for (let k = 0; k < n / 2; k++) {
      const s = tau * this.smoothed[k] + (1 - tau) * Math.hypot(re[k], im[k]) / n;
      this.smoothed[k] = Number.isFinite(s) ? s : 0;
    }
    this.computedAt = played;
    return this.smoothed;
  }

  getByteFrequencyData(out) {
    const data = this.frequencyData();
    const scale = 255 / (this.maxDecibels - this.minDecibels);
    const m = Math.min(out.length, data.length);
    for (let k = 0; k < m; k++) {
      const b = Math.floor(scale * (20 * Math.log10(data[k]) - this.minDecibels));
      out[k] = Number.isFinite(b) ? Math.max(0, Math.min(255, b)) : 0;
    }
  }
}

/** An AudioContext playing `samples` at `rate`; `clock()` gives the current time in ms. */
export class AudioContext {
  constructor(samples, rate, clock) {
    this.samples = samples;
    this.sampleRate = rate;
    this.clock = clock;
    this.destination = {};
  }
  /** Samples of the render quanta played by now. */
  playedSamples() {
    const quanta = Math.floor(this.clock() / 1000 * this.sampleRate / RENDER_QUANTUM);
    return Math.min(quanta * RENDER_QUANTUM, this.samples.length);
  }
  createAnalyser() { return new AnalyserNode(this); }
  createMediaElementSource() { return { connect() {} }; }
  resume() { return Promise.resolve(); }
}
