// Curves in the page: frames x named channels at a frame rate, as `distilface animate -o x.json`
// writes them ({"fps", "names", "frames": [[...52], ...]}, distilface.curves.Curves).

export class Track {
  /** fps: frames per second; names: curve names; frames: Float32Array per frame (may grow). */
  constructor(fps, names, frames = []) {
    if (!(fps > 0)) throw new Error(`curves: fps must be positive, got ${fps}`);
    this.fps = fps;
    this.names = names;
    this.frames = frames;
    this.column = new Map(names.map((n, i) => [n, i]));
  }

  static fromJSON(d) {
    if (!d || !Array.isArray(d.names) || !Array.isArray(d.frames)) throw new Error("curves: need {fps, names, frames}");
    const frames = d.frames.map((f, k) => {
      if (f.length !== d.names.length) throw new Error(`curves: frame ${k} has ${f.length} values, ${d.names.length} names`);
      return Float32Array.from(f);
    });
    return new Track(Number(d.fps), d.names, frames);
  }

  toJSON() {
    return { fps: this.fps, names: this.names, frames: this.frames.map((f) => Array.from(f)) };
  }

  get durationS() {
    return this.frames.length / this.fps;
  }

  push(values) {
    this.frames.push(Float32Array.from(values));
  }

  /** Weights at time tS: linear between the frames around it (frame k shows time k / fps), held at the ends. */
  at(tS, out = new Float32Array(this.names.length)) {
    const n = this.frames.length;
    if (n === 0) return out.fill(0);
    const f = Math.min(Math.max(tS * this.fps, 0), n - 1);
    const k = Math.floor(f), a = f - k;
    const lo = this.frames[k], hi = this.frames[Math.min(k + 1, n - 1)];
    for (let i = 0; i < out.length; i++) out[i] = a === 0 ? lo[i] : lo[i] + a * (hi[i] - lo[i]);
    return out;
  }
}
