"""ONNX export: checker + onnxruntime == torch on real speech, both graphs, int8, a loud failure on
mismatch, the explicit state of the streaming graph, and the onnxruntime-only path without torch."""

import json
from pathlib import Path
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch

from distilface.animate import animate_audio
from distilface.audio import load_audio
from distilface.checkpoint import save_checkpoint
from distilface.cli import main
from distilface.runtime import export as export_mod
from distilface.audio import EXAMPLE_AUDIO
from distilface.runtime.export import ExportMismatch, export_model
from distilface.runtime.ort import META_KEY, OrtModel
from distilface.runtime.step import stream_geometry
from distilface.student import StudentConfig, build_student


def tiny(arch="conv", **kw):
    torch.manual_seed(0)
    return build_student(StudentConfig(arch=arch, channels=16, context_groups=8, **kw)).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    model = tiny()
    reports = {(graph, int8): export_model(model, root / f"{graph}{'-int8' if int8 else ''}.onnx",
                                           streaming=graph == "streaming", int8=int8)
               for graph in ("windowed", "streaming") for int8 in (False, True)}
    return model, root, reports


@pytest.mark.parametrize("graph", ["windowed", "streaming"])
def test_fp32_graphs_equal_torch_on_real_speech(exported, graph):
    model, root, reports = exported
    rep = reports[graph, False]
    assert rep["frames"] == 99 and rep["max_abs_diff"] < 1e-4  # the example clip, streamed in 20 ms pushes
    path = root / f"{graph}.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    ort_model = OrtModel(path)
    assert ort_model.graph == graph and ort_model.geometry == stream_geometry(model)
    meta = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}[META_KEY])
    assert meta["names"] == list(model.cfg.names) and meta["int8"] is False
    # one window in, one frame out, any number of windows at once
    windows = (0.1 * torch.randn(3, model.cfg.window_samples, generator=torch.Generator().manual_seed(2)))
    with torch.inference_mode():
        np.testing.assert_allclose(ort_model.windows(windows.numpy()), model(windows).numpy(), atol=1e-5)


def test_streaming_graph_state_is_explicit(exported):
    model, root, _ = exported
    session = OrtModel(root / "streaming.onnx").session
    assert [i.name for i in session.get_inputs()] == ["audio", "cache", "frames"]
    assert [o.name for o in session.get_outputs()] == ["curves", "cache_out"]
    g = stream_geometry(model)
    audio = (0.1 * np.random.default_rng(3).standard_normal(g.receptive_samples + 9 * 320)).astype(np.float32)
    cache = np.random.default_rng(4).standard_normal((1, g.feature_channels, g.steps_per_window - 1)).astype(np.float32)

    def run(a, c, frames):
        return session.run(None, {"audio": a[None], "cache": c, "frames": np.array(frames, np.int64)})

    # cache + 10 new steps = 34 steps; windows of 25 starting at index 0 and 9
    whole, whole_cache = run(audio, cache, [0, 9])
    # the same in two calls, the state carried: 6 new steps, then 4 more
    first, mid_cache = run(audio[: g.receptive_samples + 5 * 320], cache, [0])
    second, end_cache = run(audio[6 * 320:], mid_cache, [3])  # old cache step 9 is now at index 3
    assert mid_cache.shape == cache.shape
    np.testing.assert_allclose(first[0], whole[0], atol=1e-5)
    np.testing.assert_allclose(second[0], whole[1], atol=1e-5)
    np.testing.assert_allclose(end_cache, whole_cache, atol=1e-5)


def test_streaming_graph_has_no_shape_arithmetic(exported):
    """The encoder's patch slices are constants in the graph: no If, one Shape at most (the window
    gather's reshape), and Div only inside Gelu. Before, 137 of C0/4's 288 nodes only
    computed slice ends from the input's length (0.265 -> 0.226 ms per frame without them,
    docs/performance.md)."""
    _, root, _ = exported
    ops = [n.op_type for n in onnx.load(str(root / "streaming.onnx")).graph.node]
    assert "If" not in ops and ops.count("Shape") <= 1 and ops.count("Div") == ops.count("Erf"), sorted(set(ops))
    # patches: a reshape where the kernel is whole strides (the first conv, 10 = 2 x 5: two row
    # slices; the last two, 2 = 1 x 2: none), a slice per tap elsewhere (four convs of kernel 3)
    assert ops.count("Slice") >= 2 + 4 * 3 and ops.count("Reshape") >= 3


def test_int8_is_smaller_and_close(exported):
    _, root, reports = exported
    for graph in ("windowed", "streaming"):
        rep = reports[graph, True]
        assert rep["bytes"] < 0.7 * rep["fp32_bytes"]  # tiny model: float norms and biases weigh more
        assert rep["max_abs_diff"] < export_mod.INT8_TOLERANCE
        assert rep["float_nodes"] and all("encoder_convs.0" in n for n in rep["float_nodes"])  # raw audio stays float
        assert OrtModel(root / f"{graph}-int8.onnx").meta["int8"] is True


def test_mismatch_fails_loudly_and_writes_nothing(tmp_path, monkeypatch):
    model = tiny()
    real_copy = export_mod.export_copy

    def broken(student):
        twin = real_copy(student)
        with torch.no_grad():
            twin.fc[-1].bias += 0.5  # what a wrong export formulation would do
        return twin

    monkeypatch.setattr(export_mod, "export_copy", broken)
    with pytest.raises(ExportMismatch, match="differs from torch"):
        export_model(model, tmp_path / "bad.onnx", streaming=True)
    assert list(tmp_path.iterdir()) == []


def test_frame_grid_streaming_graph(tmp_path):
    """On an 80-sample frame grid the streaming graph runs the dense encoder: its state is the
    (W - 1) x 4 cached steps and 3 shared-layer outputs, and it still equals torch (the export's
    own check streams real speech) and carries the grid to the runtime."""
    model = tiny(frame_grid_samples=80)
    rep = export_model(model, tmp_path / "g.onnx", streaming=True)
    assert rep["max_abs_diff"] < 1e-4
    m = OrtModel(tmp_path / "g.onnx")
    g = m.geometry
    assert (g.hop_samples, g.grid_samples, g.tail_steps, g.state_steps) == (80, 80, 3, 24 * 4 + 3)
    assert m.meta["smooth_offset_samples"] == 240
    audio = load_audio(EXAMPLE_AUDIO)
    np.testing.assert_allclose(m.windows(np.stack([audio[:g.window_samples], audio[800: 800 + g.window_samples]])),
                               model(torch.from_numpy(np.stack([audio[:g.window_samples],
                                                                audio[800: 800 + g.window_samples]]))).detach().numpy(),
                               atol=1e-5)


def test_files_before_the_grid_still_load(exported, tmp_path):
    """Exports from before the frame grid have no hop, grid or tail in their metadata: they stream
    as before (hop = the encoder stride, no grid, no tail)."""
    model, root, _ = exported
    old = onnx.load(str(root / "streaming.onnx"))
    for p in old.metadata_props:
        if p.key == META_KEY:
            meta = json.loads(p.value)
            for k in ("hop_samples", "grid_samples", "tail_steps"):
                meta.pop(k)
            p.value = json.dumps(meta)
    onnx.save(old, str(tmp_path / "old.onnx"))
    g = OrtModel(tmp_path / "old.onnx").geometry
    assert (g.hop_samples, g.grid_samples, g.tail_steps) == (320, 1, 0) and g == stream_geometry(model)


@pytest.mark.parametrize("arch", ["mfcc", "whisper_conv"])
def test_baselines_export_streaming(tmp_path, arch):
    rep = export_model(tiny(arch), tmp_path / "b.onnx", streaming=True)
    assert rep["max_abs_diff"] < 1e-4


def test_cli_export(tmp_path, capsys):
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, tiny())
    main(["export", str(ckpt), "-o", str(tmp_path / "m.onnx"), "--streaming", "--fps", "60"])
    rep = json.loads(capsys.readouterr().out)
    assert rep["graph"] == "streaming" and rep["frames"] == 198 and rep["max_abs_diff"] < 1e-4
    assert OrtModel(tmp_path / "m.onnx").meta["checked_fps"] == 60.0


def test_cli_frame_grid_export_and_animate(tmp_path, capsys):
    """`--frame-grid` through the real CLI: the export carries it, `animate` of the export equals
    `animate` of the checkpoint on the same grid, and asking an export for another grid fails."""
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, tiny())
    main(["export", str(ckpt), "-o", str(tmp_path / "g.onnx"), "--streaming", "--frame-grid", "160"])
    assert OrtModel(tmp_path / "g.onnx").geometry.grid_samples == 160
    capsys.readouterr()
    for model, name in ((ckpt, "torch.csv"), (tmp_path / "g.onnx", "onnx.csv")):
        main(["animate", str(EXAMPLE_AUDIO), "-o", str(tmp_path / name), "--model", str(model), "--frame-grid", "160",
              "--no-progress"])
    a, b = (np.genfromtxt(tmp_path / n, delimiter=",", skip_header=1)[:, 2:] for n in ("torch.csv", "onnx.csv"))
    assert a.shape == (99, 61) and np.nanmax(np.abs(a - b)) < 1e-4
    with pytest.raises(ValueError, match="export it again with --frame-grid 80"):
        from distilface.animate import load_model
        load_model(tmp_path / "g.onnx", frame_grid=80)


NO_TORCH = """
import sys

class _NoTorch:  # any `import torch` (or torch.*) fails, as on a machine without it
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")

sys.meta_path.insert(0, _NoTorch())
import numpy as np
from distilface.animate import animate_command, animate_file
from distilface.runtime.ort import OrtModel
from distilface.runtime.streaming import StreamingAnimator

model = OrtModel(sys.argv[1])
audio = np.load(sys.argv[2])
s = StreamingAnimator(model.smoothed((0.25, 0.5, 0.25)), 60.0)
smooth = np.concatenate([s.push(audio[i: i + 333]) for i in range(0, len(audio), 333)] + [s.flush()])
np.save(sys.argv[3], smooth)
np.save(sys.argv[4], animate_file(model, sys.argv[5], fps=30.0, block_s=0.5, progress=False).values)
animate_command(sys.argv[5], sys.argv[6], sys.argv[1])
from distilface.cli import main  # the real CLI, smoothed, on the ONNX model
main(["animate", sys.argv[5], "-o", sys.argv[6] + ".csv", "--model", sys.argv[1], "--smooth", "--no-progress"])
assert "torch" not in sys.modules
"""


def test_onnxruntime_path_needs_no_torch(exported, tmp_path):
    from distilface.smoothing import EnsembleSmoothed

    model, root, _ = exported
    audio = load_audio(EXAMPLE_AUDIO)
    np.save(tmp_path / "audio.npy", audio)
    wav = tmp_path / "clip44k.wav"  # 44.1 kHz stereo: the file path resamples and mixes down
    from distilface.audio import resample

    sf.write(wav, np.stack([resample(audio, 16000, 44100)] * 2, axis=1), 44100, subtype="FLOAT")
    script = tmp_path / "no_torch.py"
    script.write_text(textwrap.dedent(NO_TORCH))
    out = [tmp_path / n for n in ("smooth.npy", "file.npy", "curves.json")]
    subprocess.run([sys.executable, str(script), str(root / "streaming.onnx"), str(tmp_path / "audio.npy"),
                    str(out[0]), str(out[1]), str(wav), str(out[2])], check=True, timeout=120)
    np.testing.assert_allclose(np.load(out[0]), animate_audio(EnsembleSmoothed(model), audio, 60.0).values,
                               atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.load(out[1]), animate_audio(model, load_audio(wav), 30.0).values,
                               atol=1e-4, rtol=0)
    assert len(json.loads(out[2].read_text())["frames"]) == len(np.load(out[1]))
    assert len(Path(str(out[2]) + ".csv").read_text().splitlines()) == len(np.load(out[1])) + 1  # header


def test_int8_quality_scores_both_models_on_eval_sets(exported, tmp_path):
    from distilface.corpus.synth import SynthConfig, synth_corpus
    from distilface.runtime.quality import int8_quality

    model, root, _ = exported
    manifest = synth_corpus(SynthConfig(hours=0.003, max_voices=3, engines=("espeak-ng",), augment_fraction=0.0),
                            tmp_path / "corpus", workers=1)
    rep = int8_quality(model, root / "streaming-int8.onnx", tmp_path / "q", test_sets=("clean", "real"),
                       max_utterances=2, corpus=manifest, real=tmp_path / "missing.jsonl", progress=False)
    clean = rep["sets"]["clean"]
    assert clean["status"] == "ok" and rep["sets"]["real"]["status"] == "skipped"
    assert set(clean["results"]) == {"fp32 torch", "int8 onnxruntime (streaming)"}
    assert 0 < clean["max_abs_diff"] < export_mod.INT8_TOLERANCE
    assert "int8 onnxruntime (streaming)" in (tmp_path / "q" / "int8.md").read_text()
