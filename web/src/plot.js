// A scrolling plot of a few mouth curves on a <canvas>: the last PAST_S seconds before the
// current time and FUTURE_S after it (clip mode, where the future is known), a cursor at "now".

export const PLOT_CURVES = [
  ["jawOpen", "#6cb6ff"],
  ["mouthClose", "#ff7b72"],
  ["mouthFunnel", "#d2a8ff"],
  ["mouthPucker", "#7ee787"],
  ["mouthSmileLeft", "#ffa657"],
  ["mouthLowerDownLeft", "#e3b341"],
];
const PAST_S = 3.0;
const FUTURE_S = 1.0;
const PAD_PX = 6;

export class CurvePlot {
  constructor(canvas, legend) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    legend.replaceChildren(...PLOT_CURVES.map(([name, colour]) => {
      const s = document.createElement("span");
      s.style.color = colour;
      s.textContent = `— ${name}`;
      return s;
    }));
  }

  /** track: a Track (or null); tS: the time at the cursor; showFuture: draw the frames after it. */
  draw(track, tS, showFuture = true) {
    const { canvas, ctx } = this;
    const w = canvas.width, h = canvas.height;
    const spanS = PAST_S + (showFuture ? FUTURE_S : 0);
    const t0 = tS - PAST_S;
    const x = (t) => ((t - t0) / spanS) * w;
    const y = (v) => h - PAD_PX - v * (h - 2 * PAD_PX);
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = "#2b303a";
    ctx.lineWidth = 1;
    for (const v of [0, 0.5, 1]) {
      ctx.beginPath(); ctx.moveTo(0, y(v)); ctx.lineTo(w, y(v)); ctx.stroke();
    }
    for (let s = Math.ceil(t0); s <= t0 + spanS; s++) {
      ctx.beginPath(); ctx.moveTo(x(s), 0); ctx.lineTo(x(s), h); ctx.stroke();
      ctx.fillStyle = "#5c6370"; ctx.fillText(`${s} s`, x(s) + 3, 11);
    }
    if (track && track.frames.length) {
      const first = Math.max(0, Math.floor(t0 * track.fps));
      const last = Math.min(track.frames.length - 1, Math.ceil((t0 + spanS) * track.fps));
      ctx.lineWidth = 1.5;
      for (const [name, colour] of PLOT_CURVES) {
        const c = track.column.get(name);
        if (c === undefined) continue;
        ctx.strokeStyle = colour;
        ctx.beginPath();
        for (let k = first; k <= last; k++) {
          const px = x(k / track.fps), py = y(track.frames[k][c]);
          if (k === first) ctx.moveTo(px, py); else ctx.lineTo(px, py);
        }
        ctx.stroke();
      }
    }
    ctx.strokeStyle = "#e6edf3";
    ctx.beginPath(); ctx.moveTo(x(tS), 0); ctx.lineTo(x(tS), h); ctx.stroke();
  }
}
