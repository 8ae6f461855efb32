"""Random changes that make rendered training audio sound like real
recordings: room reverb, microphone EQ, noise and gain (detuning happens
at render time, see `mtools.training.renders`), and, drawn afresh for
every training crop, a timbre change of its log-mel (`augment_mel`).
numpy only; every change is drawn from the generator it is given, so a
seed repeats it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtools.models.transcription import LOG_FLOOR, FrontEnd


@dataclass(frozen=True)
class Augmentation:
    """Random changes to training audio; each happens with its probability
    `*_p`. Ranges are uniform. Detuning is applied when a performance is
    rendered (a PitchBend at 0 s); the rest per segment, in the order room,
    microphone, noise, gain, then clipping to [-1, 1]."""

    detune_p: float = 0.5
    detune_cents: float = 20.0  # +-
    reverb_p: float = 0.5
    rt60_s: tuple[float, float] = (0.2, 1.5)  # decay to -60 dB
    wet_mix: tuple[float, float] = (0.05, 0.4)
    eq_p: float = 0.5
    eq_db: float = 6.0  # the smooth EQ curve stays within +-eq_db
    noise_p: float = 0.3
    snr_db: tuple[float, float] = (20.0, 50.0)
    pink_noise_p: float = 0.5  # else white
    gain_p: float = 1.0
    gain_db: tuple[float, float] = (-12.0, 6.0)


AUGMENTATION = Augmentation()


@dataclass(frozen=True)
class MelAugmentation:
    """A change of timbre and level drawn for each training crop, applied to
    its mel bands' power: a tilt of +-tilt_db_per_octave around 1 kHz plus
    `bumps` bell curves of +-bump_db over log frequency (widths in octaves,
    the sum clipped to +-eq_db), then a gain; with probability `p`. The
    cached renders' own augmentation is fixed per segment, so a network
    that sees each segment many times could learn those few timbres."""

    p: float = 0.8
    tilt_db_per_octave: float = 2.0
    bumps: int = 3
    bump_db: float = 6.0
    bump_octaves: tuple[float, float] = (0.3, 1.5)
    eq_db: float = 9.0
    gain_db: tuple[float, float] = (-6.0, 6.0)


MEL_AUGMENTATION = MelAugmentation()
# Band power below this is taken as silence before scaling: cached log-mels
# are float16, whose rounding near the log floor (±0.004) is about this much
# power, and scaling would make that rounding audible.
MEL_NOISE_POWER = 1e-8


def mel_curve_db(centres_hz: np.ndarray, rng: np.random.Generator,
                 settings: MelAugmentation = MEL_AUGMENTATION) -> np.ndarray:
    """(bands,) a random EQ curve plus gain in dB (see MelAugmentation)."""
    octaves = np.log2(np.asarray(centres_hz, np.float64) / 1000.0)
    curve = rng.uniform(-1.0, 1.0) * settings.tilt_db_per_octave * octaves
    for _ in range(settings.bumps):
        centre = rng.uniform(octaves[0], octaves[-1])
        width = rng.uniform(*settings.bump_octaves)
        curve += rng.uniform(-settings.bump_db, settings.bump_db) * np.exp(
            -0.5 * ((octaves - centre) / width) ** 2)
    return np.clip(curve, -settings.eq_db, settings.eq_db) + rng.uniform(*settings.gain_db)


def augment_mel(mel: np.ndarray, centres_hz: np.ndarray, rng: np.random.Generator,
                settings: MelAugmentation = MEL_AUGMENTATION) -> np.ndarray:
    """(frames, bands) log-mel as FrontEnd.log_mel makes it → the same with
    each band's power scaled by a random curve (mel_curve_db), with
    probability settings.p; silence (power under MEL_NOISE_POWER) stays
    silent."""
    if rng.random() >= settings.p:
        return mel
    scale = 10.0 ** (mel_curve_db(centres_hz, rng, settings) / 10.0)
    power = np.exp(np.asarray(mel, np.float64)) - LOG_FLOOR
    power[power < MEL_NOISE_POWER] = 0.0
    return np.log(power * scale + LOG_FLOOR).astype(np.float32)


def augment(audio: np.ndarray, rng: np.random.Generator,
            settings: Augmentation = AUGMENTATION, *,
            context: np.ndarray | None = None) -> np.ndarray:
    """(samples,) float mono at the front end's rate → (samples,) float32
    in [-1, 1]: room reverb, microphone EQ, noise and gain, each with its
    probability in `settings`. `context` is the dry audio just before the
    clip, so the reverb tail of earlier notes carries into it."""
    rate = FrontEnd().sample_rate_hz
    x = np.asarray(audio, np.float64)
    if rng.random() < settings.reverb_p:
        before = np.zeros(0) if context is None else np.asarray(context, np.float64)
        x = _reverb(x, before, rng, settings, rate)
    if rng.random() < settings.eq_p:
        x = _microphone_eq(x, rng, settings.eq_db, rate)
    if rng.random() < settings.noise_p:
        x = _add_noise(x, rng, settings, rate)
    if rng.random() < settings.gain_p:
        x = x * 10.0 ** (rng.uniform(*settings.gain_db) / 20.0)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def _reverb(x: np.ndarray, before: np.ndarray, rng, settings: Augmentation,
            rate: int) -> np.ndarray:
    """Mix in x convolved with a synthetic room: Gaussian noise under an
    exponential envelope that falls 60 dB in RT60, of unit energy."""
    rt60 = rng.uniform(*settings.rt60_s)
    wet = rng.uniform(*settings.wet_mix)
    length = max(1, int(rt60 * rate))
    envelope = 10.0 ** (-3.0 * np.arange(length) / (rt60 * rate))  # -60 dB at rt60
    response = rng.standard_normal(length) * envelope
    response /= np.sqrt(np.sum(response ** 2))
    before = before[len(before) - min(len(before), length - 1):]
    signal = np.concatenate([before, x])
    size = 1 << int(np.ceil(np.log2(len(signal) + length - 1)))
    spectrum = np.fft.rfft(signal, size) * np.fft.rfft(response, size)
    reverberant = np.fft.irfft(spectrum, size)[len(before):len(before) + len(x)]
    return (1.0 - wet) * x + wet * reverberant


def _microphone_eq(x: np.ndarray, rng, max_db: float, rate: int) -> np.ndarray:
    """A smooth random gain curve over log frequency (a tilt around 1 kHz
    plus a low and a high shelf), within +-max_db, applied as a zero-phase
    filter in the FFT domain."""
    freqs = np.fft.rfftfreq(len(x), 1.0 / rate)
    octaves = np.log2(np.maximum(freqs, 20.0) / 1000.0)
    low_corner = np.log2(rng.uniform(80.0, 400.0) / 1000.0)
    high_corner = np.log2(rng.uniform(2000.0, 6000.0) / 1000.0)
    curve_db = (rng.uniform(-1.0, 1.0) * max_db / 4.0 * octaves
                + rng.uniform(-max_db, max_db) / (1.0 + np.exp(2.0 * (octaves - low_corner)))
                + rng.uniform(-max_db, max_db) / (1.0 + np.exp(-2.0 * (octaves - high_corner))))
    gain = 10.0 ** (np.clip(curve_db, -max_db, max_db) / 20.0)
    return np.fft.irfft(np.fft.rfft(x) * gain, len(x))


def _add_noise(x: np.ndarray, rng, settings: Augmentation, rate: int) -> np.ndarray:
    """White or pink (-3 dB per octave) noise at a random SNR to the clip's
    mean power; silence stays silent."""
    power = float(np.mean(x ** 2)) if len(x) else 0.0
    if power <= 0.0:
        return x
    snr_db = rng.uniform(*settings.snr_db)
    noise = rng.standard_normal(len(x))
    if rng.random() < settings.pink_noise_p:
        freqs = np.fft.rfftfreq(len(x), 1.0 / rate)
        noise = np.fft.irfft(np.fft.rfft(noise) / np.sqrt(np.maximum(freqs, 20.0)), len(x))
    noise *= np.sqrt(power / 10.0 ** (snr_db / 10.0) / max(np.mean(noise ** 2), 1e-20))
    return x + noise
