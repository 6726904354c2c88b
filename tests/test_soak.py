"""`distilface bench soak` on a short stream: the real CLI server over loopback keeps every frame of a
good viewer in order, drops (not waits for) a slow one, survives a disconnecting one, and reports
memory from the server process."""

import json

from distilface.cli import main
from distilface.curves import num_frames


def test_soak_short_run_through_the_cli(tmp_path):
    out = tmp_path / "soak"
    main(["bench", "soak", "--audio-s", "12", "--speed", "8", "--slow-ms", "1000", "--max-growth-mb", "50",
          "--out", str(out)])
    r = json.loads(out.with_suffix(".json").read_text())
    want = num_frames(12.0, 30.0)
    assert r["frames_expected"] == want == 360
    assert r["good"] == {"frames": want, "in_order_no_loss": True, "duplicates": 0}
    # the slow viewer reads one frame a second: had the server waited for it, the run would last 360 s
    assert r["wall_s"] < 120 and r["slow"]["in_order"] and r["slow"]["missing"] > 0
    assert r["disconnecting"]["connections"] >= 2 and r["disconnecting"]["in_order"]
    assert r["server_alive_at_end"] and r["passed"]
    assert 50 < r["rss_mb"]["max"] < 2000 and len(r["rss_mb"]["samples"]) >= 3
    assert out.with_suffix(".png").stat().st_size > 1000
