"""Loopback latency of the live server with every core busy, at three scheduling priorities.

    python scripts/latency_under_load.py c0-4-256ms-ft --frame-grid 80 --seconds 20 --runs 2

Starts one busy-loop process per core (the load: a game, a browser, a build), then runs
`distilface.runtime.live.loopback_latency` (the `stream` server, its audio sender and its frames
viewer over WebSocket on 127.0.0.1, in one process) once per priority of the server's threads
(`distilface stream --priority`: normal, high = nice -10, realtime = SCHED_FIFO 10; the last two
need root or CAP_SYS_NICE), interleaved run by run. The sender and the viewer, like the busy
loops, stay at normal priority, as a client in another process would, unless --client-priority
raises them (and with them every thread of the process). Each measurement runs in its own
process. Prints one JSON line per measurement: end-to-end latency as the viewer saw it, and
`server_ms`, the server's own share (a chunk's arrival to its frames' dispatch).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time


def _busy(stop) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def _measure(priority: str, client: str, model: str, grid: int | None, seconds: float, smooth: str | None,
             out) -> None:
    from distilface.runtime.priority import set_priority

    set_priority(client)  # this thread sends; the viewer's and the server's threads start from it
    from distilface.animate import load_model
    from distilface.models import resolve_model
    from distilface.runtime.live import loopback_latency

    m = load_model(resolve_model(model), ort_threads=1, frame_grid=grid)
    r = loopback_latency(m, seconds=seconds, smooth=smooth, priority=priority)
    out.put({"runtime": type(m).__name__, **{k: r[k] for k in
             ("priority", "frames", "median_ms", "p99_ms", "max_ms", "server_ms", "future_ms", "chunk_ms", "dropped",
              "underruns")}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--frame-grid", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--smooth", default=None, help="smoothing weights, as for stream --smooth")
    ap.add_argument("--priorities", default="normal,high,realtime", help="of the server's threads, in turn")
    ap.add_argument("--client-priority", default="normal",
                    help="of the sender and viewer (and so of every thread of the process: the server's inherit it)")
    ap.add_argument("--load", type=int, default=os.cpu_count(), help="busy-loop processes (default: one per core)")
    args = ap.parse_args()

    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    load = [ctx.Process(target=_busy, args=(stop,), daemon=True) for _ in range(args.load)]
    for p in load:
        p.start()
    time.sleep(1.0)
    try:
        for run in range(args.runs):
            for priority in args.priorities.split(","):
                q = ctx.Queue()
                p = ctx.Process(target=_measure, args=(priority, args.client_priority, args.model, args.frame_grid, args.seconds,
                                                      args.smooth, q))
                p.start()
                result = q.get(timeout=600)
                p.join()
                print(json.dumps({"run": run, "load": args.load, "model": args.model, "frame_grid": args.frame_grid,
                                  "smooth": args.smooth, "asked": priority, "client": args.client_priority, **result}), flush=True)
    finally:
        stop.set()
        for p in load:
            p.join(5)
    sys.exit(0)


if __name__ == "__main__":
    main()
