// Frames from `distilface stream --output ws` (docs/stream.md): JSON text messages on
// ws://HOST:PORT/frames: "hello" on connect, then per stream "start", "frame"s and "end".

export class LiveClient {
  /** handlers: {onStart(msg), onFrame(msg, delayMs), onEnd(msg), onStatus(text)} */
  constructor(url, handlers) {
    this.url = url;
    this.h = handlers;
    this.frames = 0;
    this.ws = new WebSocket(url);
    this.ws.onopen = () => this.h.onStatus(`connected to ${url}, waiting for a stream`);
    this.ws.onclose = (e) => this.h.onStatus(`closed (${e.code}${e.reason ? ` ${e.reason}` : ""}) after ${this.frames} frames`);
    this.ws.onerror = () => this.h.onStatus(`cannot reach ${url}: is \`distilface stream --output ws\` running?`);
    this.ws.onmessage = (e) => this._message(JSON.parse(e.data));
  }

  _message(m) {
    if (m.type === "hello") {
      this.names = m.names;
      this.fps = m.fps;
    } else if (m.type === "start") {
      this.names = m.names ?? this.names;
      this.fps = m.fps ?? this.fps;
      this.h.onStart(m);
    } else if (m.type === "frame") {
      this.frames++;
      // Same machine, same clock: how long the frame took from the server's hand-off to here.
      const delayMs = Date.now() - m.sent_unix_s * 1000;
      this.h.onFrame(m, delayMs);
    } else if (m.type === "end") {
      this.h.onEnd(m);
    }
  }

  close() {
    this.ws.close();
  }
}
