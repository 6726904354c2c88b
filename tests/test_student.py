"""Student network: sizes, shared-encoder evaluation equals per-window evaluation, checkpoints."""

import pytest
import torch
import torch.nn.functional as F

from distilface.checkpoint import load_student, save_checkpoint
from distilface.student import Student, StudentConfig, count_parameters, dense_hops, encoder_stride, frame_starts


def windows_at(audio, starts, cfg):
    pad = 20000
    padded = F.pad(audio, (pad, pad))
    return torch.stack([padded[s + pad: s + pad + cfg.window_samples] for s in starts.tolist()])


def test_widths_match_the_papers_sizes():
    sizes = {c: count_parameters(Student(StudentConfig(channels=c))) for c in (288, 144, 72)}
    assert 2.8e6 < sizes[288] < 3.4e6  # paper C0: 3 M
    assert 0.7e6 < sizes[144] < 0.9e6  # C0/2: 0.8 M
    assert 0.2e6 < sizes[72] < 0.3e6  # C0/4: 0.23 M


@pytest.mark.parametrize("fps,future_ms", [(30, 256.0), (60, 64.0), (50, 128.0)])
def test_shared_encoder_equals_per_window(fps, future_ms):
    torch.manual_seed(0)
    cfg = StudentConfig(channels=24, context_groups=8, future_ms=future_ms)
    model = Student(cfg).eval()
    audio = 0.1 * torch.randn(16000 + 1234)
    starts = frame_starts(int(1.08 * fps), fps, cfg)
    with torch.no_grad():
        shared = model.forward_frames(audio, starts)
        naive = model(windows_at(audio, starts, cfg))
    assert shared.shape == (len(starts), 52)
    torch.testing.assert_close(shared, naive, atol=1e-5, rtol=0)


def test_forward_chunks_equals_per_window():
    torch.manual_seed(1)
    cfg = StudentConfig(channels=16, context_groups=8, output_activation="tanh", names=("a", "b", "c"))
    model = Student(cfg).eval()
    frames = 7
    audio = 0.1 * torch.randn(2, cfg.window_samples + (frames - 1) * encoder_stride())
    with torch.no_grad():
        out = model.forward_chunks(audio, frames)["out"].view(2, frames, 3)
        for b in range(2):
            starts = torch.arange(frames) * encoder_stride()
            torch.testing.assert_close(out[b], model(windows_at(audio[b], starts, cfg)), atol=1e-5, rtol=0)
    assert out.abs().max() <= 1  # tanh range


def test_checkpoint_round_trip(tmp_path):
    cfg = StudentConfig(channels=16, context_groups=8, future_ms=64.0)
    model = Student(cfg).eval()
    save_checkpoint(tmp_path / "m.pt", model, step=3)
    loaded, ckpt = load_student(tmp_path / "m.pt")
    assert loaded.cfg == cfg and ckpt["step"] == 3
    x = torch.randn(2, cfg.window_samples)
    torch.testing.assert_close(loaded(x), model(x))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_student(tmp_path / "bad.pt")


def test_config_is_checked():
    with pytest.raises(ValueError):
        StudentConfig(norm="group")
    with pytest.raises(ValueError):
        StudentConfig(channels=30, context_groups=8)


@pytest.mark.parametrize("steps", [25, 5, 40])
def test_window_conv_paths_equal_a_plain_conv(steps):
    """Training (block-Toeplitz) and inference (conv on the reached taps) both equal Conv1d[..., :W]."""
    from distilface.student import WindowConv

    torch.manual_seed(0)
    conv = WindowConv(16, 16, 64, padding=32, groups=4)
    ref = torch.nn.Conv1d(16, 16, 64, padding=32, groups=4)
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(3, 16, steps)
    want = ref(x)[..., :steps]
    torch.testing.assert_close(conv.train()(x), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.eval()(x), want, rtol=1e-5, atol=1e-5)
    lo, hi = conv.used_taps(steps)
    assert (lo, hi) == ((8, 56) if steps == 25 else (28, 36) if steps == 5 else (0, 63))


def test_window_conv_batched_inference_uses_a_cached_toeplitz_that_follows_the_weights():
    from distilface.student import TOEPLITZ_MIN_WINDOWS, WindowConv

    torch.manual_seed(1)
    conv = WindowConv(16, 16, 64, padding=32, groups=4).eval()
    ref = torch.nn.Conv1d(16, 16, 64, padding=32, groups=4)
    x = torch.randn(TOEPLITZ_MIN_WINDOWS, 16, 25)
    for _ in range(2):  # the second time the weights changed in place: the cache must not be stale
        ref.load_state_dict(conv.state_dict())
        with torch.no_grad():
            got = conv(x)
            torch.testing.assert_close(got, ref(x)[..., :25], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(conv(x[:2]), got[:2], rtol=1e-5, atol=1e-5)  # the conv path
            conv.weight.mul_(-0.5)
    assert conv._toeplitz_cache[1].shape == (4, 4 * 25, 4 * 25)


@pytest.mark.parametrize("hop", dense_hops())
def test_dense_encoder_equals_the_encoder_on_shifted_audio(hop):
    torch.manual_seed(2)
    model = Student(StudentConfig(channels=16, context_groups=8)).eval()
    audio = 0.1 * torch.randn(1, 6000)
    with torch.no_grad():
        dense = model.encode_dense(audio, hop)
        for q in (0, 1, 5, dense.shape[-1] - 1):
            torch.testing.assert_close(dense[..., q], model.encode(audio[:, hop * q:])[..., 0], atol=1e-5, rtol=0)
        # a stream in two calls: the second reads the first one's tail instead of R hops of audio again
        r, n1, rec = model.dense_tail_steps(hop), 7, 400
        first, tail = model.encode_dense_tail(audio[:, : hop * (n1 - 1) + rec], hop)
        second, _ = model.encode_dense_tail(audio[:, hop * (n1 + r): hop * (n1 + 4) + rec], hop, tail)
    assert r == {80: 3, 160: 1, 320: 0}.get(hop, r) and tail.shape == (1, r, 16)
    torch.testing.assert_close(torch.cat([first, second], 2), dense[..., : n1 + 5], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="not one of"):
        model.encode_dense(audio, 64)


@pytest.mark.parametrize("grid", [80, 160, 7])
def test_frames_on_a_grid(grid):
    """Frame times round to the grid (half to even); the shared forward still equals per-window,
    through one dense sequence where the grid is a dense hop, through phases where it is not."""
    torch.manual_seed(0)
    cfg = StudentConfig(channels=16, context_groups=8, frame_grid_samples=grid)
    model = Student(cfg).eval()
    starts = frame_starts(40, 30, cfg)
    want = torch.round(torch.arange(40, dtype=torch.float64) * 16000 / 30 / grid).long() * grid - cfg.past_samples
    assert torch.equal(starts, want) and bool(((starts + cfg.past_samples) % grid == 0).all())
    assert int((starts - frame_starts(40, 30, StudentConfig(channels=16, context_groups=8))).abs().max()) <= grid / 2
    audio = 0.1 * torch.randn(16000 + 999)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_frames(audio, starts), model(windows_at(audio, starts, cfg)),
                                   atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="frame_grid_samples"):
        StudentConfig(frame_grid_samples=321)
