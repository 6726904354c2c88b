"""`distilface info` and `bench train`: counts against hand computation, measured context, a tiny bench."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from distilface.bench import bench_train, chunk_windows, format_bench, synthetic_batch
from distilface.info import count_macs, format_info, measure_context, model_info
from distilface.student import Student, StudentConfig, encoder_stride

C = 8  # tiny width; window 512 ms = 8192 samples -> encoder steps 1637, 818, 408, 203, 101, 50, 25


def tiny(**kw) -> Student:
    torch.manual_seed(0)
    return Student(StudentConfig(channels=C, context_groups=8, fc_dims=(16, 12), names=("a", "b", "c"), **kw)).eval()


# Hand computation, layer by layer (MACs = output elements x in_channels / groups x kernel).
ENCODER_MACS = C * (1637 * 1 * 10 + (818 + 408 + 203 + 101) * C * 3 + (50 + 25) * C * 2)  # 434 320
PROJ_MACS = 25 * C * C
CONTEXT_MACS = 25 * C * 1 * 49  # 25 outputs x the 49 taps (8..56) a 25-step window reaches, 1 channel per group
REDUCE_MACS = C * C * (12 * 3 + 5 * 3 + 2 * 3 + 1 * 2)  # plan 25 -> 12 -> 5 -> 2 -> 1
FC_MACS = C * 16 + 16 * 12 + 12 * 3
HEAD_MACS = CONTEXT_MACS + REDUCE_MACS + FC_MACS
# MACs per 320 new samples of stream: outputs gained per layer 64, 32, 16, 8, 4, 2, 1 (+ proj 1 step)
STEP_MACS = 64 * C * 10 + (32 + 16 + 8 + 4) * C * C * 3 + (2 + 1) * C * C * 2 + C * C
PARAMS = (C * 10 + 4 * C * C * 3 + 2 * C * C * 2  # encoder convs, no bias
          + 7 * 2 * C  # their LayerNorms
          + 2 * C + C * C + C  # proj LayerNorm + Linear
          + C * 1 * 64 + C  # grouped context conv
          + 2 * C  # reduce LayerNorm
          + 3 * (C * C * 3 + C) + (C * C * 2 + C)  # reduce convs
          + (C * 16 + 16) + (16 * 12 + 12) + (12 * 3 + 3))  # fc


@pytest.fixture(scope="module")
def info():
    return model_info(tiny())


def test_params_and_macs_match_hand_computation(info):
    d = info
    assert d["parameters"] == PARAMS == 2963
    assert d["macs_per_frame_windowed"] == ENCODER_MACS + PROJ_MACS + HEAD_MACS == 449_852
    assert d["macs_per_layer_windowed"]["encoder_convs.0"] == 1637 * C * 10  # one layer by hand
    assert d["macs_per_layer_windowed"]["context"] == CONTEXT_MACS
    assert d["encoder_macs_per_step"] == STEP_MACS == 17_088
    assert d["phases_50fps"] == 1 and d["phases_30fps"] == 3
    assert d["macs_per_frame_shared_50fps"] == STEP_MACS + HEAD_MACS
    # 30 fps: 3 phases, each running the encoder over the stream; 533.3 samples hop = 5/3 step
    assert d["macs_per_frame_shared_30fps"] == pytest.approx(3 * 5 / 3 * STEP_MACS + HEAD_MACS)
    assert d["outputs"] == 3 and d["output_activation"] == "sigmoid"
    assert "parameters            2,963" in format_info(d)


def test_macs_on_an_80_sample_frame_grid_by_hand():
    """One dense sequence: per 80 new samples the first five layers gain 16, 8, 4, 2, 1 outputs,
    the last two (dilated, stride 1) and proj 1 each. 30 fps: one sequence, 6.67 steps a frame."""
    d = model_info(tiny(frame_grid_samples=80))
    step = 16 * C * 10 + (8 + 4 + 2 + 1) * C * C * 3 + (1 + 1) * C * C * 2 + C * C
    assert d["encoder_macs_per_step"] == step == 4480 and d["stream_hop_samples"] == 80
    assert d["phases_30fps"] == 1
    assert d["macs_per_frame_shared_30fps"] == pytest.approx(16000 / 30 / 80 * step + HEAD_MACS)
    assert d["macs_per_frame_shared_30fps"] < 0.5 * model_info(tiny())["macs_per_frame_shared_30fps"]
    assert "a step every 80 samples of stream; frame grid 80" in format_info(d)


def test_hook_count_agrees_with_torch_flop_counter():
    model = tiny()
    window = torch.zeros(2, model.cfg.window_samples)
    with torch.no_grad(), count_macs(model) as counts, FlopCounterMode(display=False) as fc:
        model(window)
    assert sum(counts.values()) == fc.get_total_flops() // 2 == 2 * 449_852


def test_memory_is_params_plus_intermediates(info):
    d = info
    assert d["memory_mb"] == pytest.approx(d["param_mb"] + d["activation_mb"])
    assert d["param_mb"] == pytest.approx(PARAMS * 4 / 1e6)
    # at least the first conv's output, its LayerNorm and its GELU (3 x (C, 1637) floats)
    assert d["activation_mb"] >= 3 * C * 1637 * 4 / 1e6
    assert 2 * C * 1637 * 4 / 1e6 <= d["peak_live_activation_mb"] <= d["activation_mb"]


@pytest.mark.parametrize("future_ms", [256.0, 64.0])
def test_measured_future_context_matches_config(future_ms):
    model = tiny(future_ms=future_ms)
    ctx = measure_context(model)
    # 25 encoder steps read window samples 0 .. 400 + 24 * 320 - 1 = 8079; the last 112 are unread
    assert (ctx["first"], ctx["last"]) == (0, 8079)
    assert ctx["future_samples"] == 8080 - (8192 - int(future_ms * 16))
    assert abs(ctx["future_samples"] - model.cfg.future_samples) < encoder_stride()


def test_chunk_windows_are_the_frames_windows():
    cfg = StudentConfig(channels=C, context_groups=8)
    audio, target = synthetic_batch(cfg, 2, 3, torch.Generator().manual_seed(0))
    assert audio.shape == (2, cfg.window_samples + 2 * encoder_stride()) and target.shape == (2, 3, 52)
    wins = chunk_windows(audio, cfg, 3)
    assert torch.equal(wins[4], audio[1, 320: 320 + cfg.window_samples])


def test_bench_train_runs_on_a_tiny_width():
    threads = torch.get_num_threads()
    r = bench_train(widths=(16,), seconds=0, min_steps=2, warmup_steps=1, shared_per_round=1,
                    batch_chunks=2, chunk_frames=4, micro_chunks=1, student={"context_groups": 8})
    assert torch.get_num_threads() == threads
    (row,) = r["rows"]
    assert row["shared_steps"] == row["naive_steps"] == 2
    for key in ("shared_step_s", "naive_step_s", "shared_audio_s_per_s", "naive_audio_s_per_s", "speedup"):
        assert row[key] > 0
    assert "| 16 |" in format_bench(r)
