"""Scheduling priority of the live stream's threads (`distilface stream --priority`).

On an idle machine the server's own share of a frame's latency (audio arrived to frame sent) has a
p99 of about 1 ms; with every core busy (a game, a browser, a build beside it) it grew to 5.7-6.3
ms because the frame waited for a time slice, not for the model (docs/performance.md, "Latency
with every core busy"; raised, 0.8-2.3 ms). Raising the
priority of the threads that carry audio to frames is how audio software answers that:

    normal    as started;
    high      nice -10 (a larger share of the CPU; still time-sliced with everything else);
    realtime  SCHED_FIFO at priority 10: runs as soon as it is runnable, ahead of every normal
              thread (Linux's real-time throttling still leaves 5 % of each core to the rest).

Both need the privilege to raise priority (root, CAP_SYS_NICE, or an `rtprio` / `nice` limit in
/etc/security/limits.conf); without it the stream refuses to start rather than run at a priority
the user did not get. Linux scheduling is per thread and inherited by threads created later, so
`set_priority` is called on the thread that runs the stream's event loop before it starts its
model thread.
"""

from __future__ import annotations

import os
import sys
import threading

PRIORITIES = ("normal", "high", "realtime")
NICE_HIGH = -10
FIFO_PRIORITY = 10  # above normal threads, below audio servers (PipeWire and JACK use 70-95)

_HOW = ("needs the right to raise priority: run as root, give the Python binary CAP_SYS_NICE "
        "(setcap cap_sys_nice+ep), or allow it in /etc/security/limits.conf (a line `USER - {limit}`, "
        "then log in again)")


def set_priority(level: str) -> str:
    """Raise the calling thread's scheduling priority to `level` (PRIORITIES) -> the thread's
    scheduling afterwards, in words (`describe`; "normal" leaves it as it was, inherited or not).

    Raises ValueError for an unknown level, PermissionError (naming what is missing) when the
    process may not raise it, OSError where the platform has no such call."""
    if level not in PRIORITIES:
        raise ValueError(f"--priority {level!r}: expected {', '.join(PRIORITIES)}")
    if level == "high":
        if not hasattr(os, "setpriority"):
            raise OSError(f"--priority high: not available on {sys.platform} (set the process priority "
                          "with the system's tools)")
        if os.getpriority(os.PRIO_PROCESS, _this_thread()) > NICE_HIGH:
            try:
                os.setpriority(os.PRIO_PROCESS, _this_thread(), NICE_HIGH)
            except PermissionError as e:
                raise PermissionError(f"--priority high (nice {NICE_HIGH}) {_HOW.format(limit='nice -10')}: "
                                      f"{e}") from None
    elif level == "realtime":
        if not hasattr(os, "sched_setscheduler"):
            raise OSError(f"--priority realtime: SCHED_FIFO is Linux's; not available on {sys.platform}")
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(FIFO_PRIORITY))  # 0: this thread
        except PermissionError as e:
            raise PermissionError(f"--priority realtime (SCHED_FIFO {FIFO_PRIORITY}) "
                                  f"{_HOW.format(limit='rtprio 10')}: {e}") from None
    return describe()


def current_priority() -> dict[str, int | str]:
    """The calling thread's policy, real-time priority and nice value (where the platform has them)."""
    out: dict[str, int | str] = {}
    if hasattr(os, "sched_getscheduler"):
        policy = os.sched_getscheduler(0)
        names = {getattr(os, n, None): n for n in ("SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH",
                                                   "SCHED_IDLE")}
        out["policy"] = names.get(policy, str(policy))
        out["rt_priority"] = os.sched_getparam(0).sched_priority
    if hasattr(os, "getpriority"):
        out["nice"] = os.getpriority(os.PRIO_PROCESS, _this_thread())
    return out


def describe() -> str:
    """The calling thread's scheduling in words: "SCHED_FIFO 10", "nice -10", "nice 0", "normal"."""
    now = current_priority()
    if now.get("policy") in ("SCHED_FIFO", "SCHED_RR"):
        return f"{now['policy']} {now['rt_priority']}"
    return f"nice {now['nice']}" if "nice" in now else "normal"


def _this_thread() -> int:
    """`who` for getpriority / setpriority: on Linux a nice value belongs to one thread, named by
    its thread id; elsewhere (0) to the process."""
    return threading.get_native_id() if sys.platform.startswith("linux") else 0
