"""Golden outputs of the bundled models. Event models: after a fixed
primer, the first logits (compared with a tolerance) and a greedy
continuation (compared exactly). Coconet: the logits of a fixed melody's
lower voices, and a greedy (temperature 0) Gibbs harmonization of it.
MusicVAE: a fixed window's posterior mean and first step's logits, and
the greedy decode of that mean (grooves: the decoded hits exactly, their
velocities and offsets with the logits' tolerance). Transcription: the
onset and frame probabilities of a fixed synthetic recording at a few
frames, and the notes decoded from it (pitch and start frame).
`python tests/golden_outputs.py` rewrites those of the models whose file
changed (`--all`: every model's); tests/test_golden.py checks them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
LOGIT_TOLERANCE = 1e-4  # absolute, float32 logits across CPUs and ORT builds
GREEDY_STEPS = 32
PRIMERS = {  # event ids in each family's model space
    "melody_rnn": [14, 0, 16, 0, 18, 0, 19, 0, 21, 0, 0, 0, 21, 0, 0, 0],  # C D E F G . G .
    "improv_rnn": [14, 0, 16, 0, 18, 0, 19, 0, 21, 0, 0, 0, 21, 0, 0, 0],
    "drums_rnn": [5, 0, 4, 0, 6, 0, 4, 0, 5, 0, 4, 0, 6, 0, 4, 0],  # kick/hat, hat, snare/hat
}
CHORD_ROW = (0, 0b000010010001, 0)  # C major under every step (improv_rnn)
CHORALE_SOPRANO = [72] * 4 + [71] * 4 + [69] * 8 + [67] * 4 + [69] * 4 + [71] * 4 + [72] * 4
VAE_WINDOWS = {  # a window in each config's class ids
    "mel_2bar": [41, 0, 43, 0, 45, 0, 46, 0, 48, 0, 0, 0, 48, 0, 0, 0,
                 50, 0, 50, 0, 50, 0, 50, 0, 48, 0, 0, 0, 1, 0, 0, 0],  # C D E F G . G . A A A A G
    "drums_2bar": [5, 4, 6, 4] * 8,  # kick/hat, hat, snare/hat, hat
}
FIT_WINDOWS = {  # windows the posterior mean decodes with mistakes, so the latent search runs
    "mel_2bar": [43, 0, 44, 0, 41, 0, 45, 0, 49, 0, 47, 0, 42, 0, 40, 0,
                 37, 0, 41, 0, 42, 0, 43, 0, 41, 0, 42, 0, 49, 0, 47, 0],  # eighths, leaps
    "drums_2bar": [5, 0, 4, 0, 6, 0, 4, 5, 0, 5, 4, 0, 6, 0, 4, 0] * 2,  # syncopated kicks
}
VAE_WINDOWS["mel_16bar"] = (VAE_WINDOWS["mel_2bar"] + FIT_WINDOWS["mel_2bar"]) * 4  # 16 bars
FIT_WINDOWS["mel_16bar"] = FIT_WINDOWS["mel_2bar"] * 8


def _trio(melody: list, bass: list, drums: list) -> list:
    """A trio window's packed ids (melody + 90 (bass + 90 drums))."""
    return [m + 90 * (b + 90 * d) for m, b, d in zip(melody, bass, drums)]


ROOT_FIFTH_BASS = [17, 0, 0, 0, 0, 0, 0, 0, 24, 0, 0, 0, 1, 0, 0, 0]  # C2 . . G2 . off (a bar)
WALKING_BASS = [17, 0, 0, 0, 19, 0, 0, 0, 21, 0, 0, 0, 22, 0, 0, 0]  # C2 D2 E2 F2 quarters
VAE_WINDOWS["bass_2bar"] = WALKING_BASS * 2
FIT_WINDOWS["bass_2bar"] = ROOT_FIFTH_BASS * 2  # the mean ends a note early; the search fixes it
VAE_WINDOWS["trio_drums_2bar"] = VAE_WINDOWS["drums_2bar"]
FIT_WINDOWS["trio_drums_2bar"] = FIT_WINDOWS["drums_2bar"]
VAE_WINDOWS["trio_16bar"] = _trio(VAE_WINDOWS["mel_16bar"], ROOT_FIFTH_BASS * 16,
                                  VAE_WINDOWS["drums_2bar"] * 8)
FIT_WINDOWS["trio_16bar"] = _trio(FIT_WINDOWS["mel_16bar"], WALKING_BASS * 16,
                                  FIT_WINDOWS["drums_2bar"] * 8)
GROOVE_VELOCITY, GROOVE_OFFSET = 0.8, 0.1  # the groove window: the drums_2bar one, played so
AUDIO_NOTES = ((60, 0.25, 1.25), (64, 0.25, 1.25), (67, 0.25, 1.25), (72, 1.5, 2.0),
               (74, 2.0, 2.5), (76, 2.5, 3.5))  # (pitch, start s, end s) of the synthetic take
FAMILIES = {*PRIMERS, "coconet", "music_vae", "onsets_frames", "onsets_frames_drums"}


def golden_run(ref) -> dict:
    """The golden figures of a bundled model (see module docstring)."""
    if ref.card.name == "coconet":
        return _coconet_run(ref)
    if ref.card.name == "music_vae":
        return _music_vae_run(ref)
    if ref.card.task == "transcribe":
        return _transcriber_run(ref)
    from mtools.models.sequence import EventRnn, SearchOptions, generate

    model = EventRnn.from_ref(ref, device="cpu")
    primer = np.array(PRIMERS[ref.card.name])
    control = None
    if model.control_size:
        from mtools.models.improv_rnn import chord_controls
        control = chord_controls(np.tile(CHORD_ROW, (len(primer) + GREEDY_STEPS + 1, 1)))
    logits, _ = model.run(model.encode(primer[None], 0, control), model.zero_state(1))
    greedy = generate(model, primer, GREEDY_STEPS, num_outputs=1,
                      options=SearchOptions(temperature=0.0), rng=np.random.default_rng(0),
                      control=control)
    return {"sha256": ref.card.sha256, "primer": primer.tolist(),
            "first_logits": [round(float(v), 6) for v in logits[0, -1]],
            "greedy_ids": greedy[0, len(primer):].tolist()}


def _coconet_run(ref) -> dict:
    from mtools.models.coconet import Coconet, GibbsOptions, generate

    model = Coconet.from_ref(ref, device="cpu")
    chorale = np.full((1, len(CHORALE_SOPRANO), 4), -1, np.int16)
    chorale[0, :, 0] = CHORALE_SOPRANO
    free = np.zeros(chorale.shape, bool)
    free[:, :, 1:] = True
    logits = model.logits(chorale, free)
    greedy = generate(model, chorale, free, GibbsOptions(iterations=4, temperature=0.0),
                      np.random.default_rng(0))
    return {"sha256": ref.card.sha256, "primer": CHORALE_SOPRANO,
            "first_logits": [round(float(v), 6) for v in logits[0, 0, :, 1:].ravel()],
            "greedy_ids": greedy[0].tolist()}


def _music_vae_run(ref) -> dict:
    from mtools.models.music_vae import MusicVae

    model = MusicVae.from_ref(ref, device="cpu")
    if model.space.kind == "groove":
        return _groove_run(ref, model)
    window = np.array([VAE_WINDOWS[ref.card.config]])
    mu, _ = model.encode(window)
    logits = model.teacher_forced_logits(mu, window)
    return {"sha256": ref.card.sha256, "primer": window[0].tolist(),
            "first_logits": [round(float(v), 6) for v in np.concatenate([mu[0], logits[0, 0]])],
            "greedy_ids": model.decode(mu, temperature=0)[0].tolist(),
            **_fit_run(model, ref.card.config)}


def _fit_run(model, config: str) -> dict:
    """interpolate's latent search on a window the mean gets wrong."""
    from mtools.models.interpolation import fit_latents

    window = np.array([FIT_WINDOWS[config]])
    before, after = fit_latents(model, window, rounds=0), fit_latents(model, window)
    assert before.right[0] < after.right[0], f"{config}: the search has nothing to do here"
    return {"fit_window": window[0].tolist(), "fitted_ids": after.decoded[0].tolist()}


def _groove_run(ref, model) -> dict:
    from mtools.models.events import NUM_DRUM_CLASSES
    from mtools.models.music_vae import frames_to_hits

    n = NUM_DRUM_CLASSES
    events = np.array(VAE_WINDOWS["drums_2bar"])
    hits = ((events[:, None] >> np.arange(n)) & 1).astype(np.float32)
    window = np.concatenate([hits, GROOVE_VELOCITY * hits, GROOVE_OFFSET * hits], axis=1)[None]
    mu, _ = model.encode(window)
    decoded = model.decode(mu, temperature=0, hits=hits[None] > 0.5
                           if model.space.encoder == "quantized" else None)[0]
    played = decoded[:, n:].ravel()  # velocities and offsets
    return {"sha256": ref.card.sha256, "primer": events.tolist(),
            "first_logits": [round(float(v), 6) for v in np.concatenate([mu[0], played])],
            "greedy_ids": frames_to_hits(decoded)[0].tolist()}


def synthetic_take(rate: int) -> np.ndarray:
    """AUDIO_NOTES as decaying harmonic tones (4 s, mono float32); drum
    models hear the same audio."""
    t = np.arange(int(4.0 * rate)) / rate
    audio = np.zeros_like(t)
    for pitch, start, end in AUDIO_NOTES:
        hz, held = 440.0 * 2 ** ((pitch - 69) / 12), (t >= start) & (t < end)
        decay = np.exp(-3.0 * np.clip(t - start, 0, None))
        audio += held * decay * sum(0.2 / k * np.sin(2 * np.pi * k * hz * t) for k in (1, 2, 3))
    return audio.astype(np.float32)


def _transcriber_run(ref) -> dict:
    from mtools.models.onsets_frames import OnsetsFrames, TranscribeOptions, predictions_to_score

    model = OnsetsFrames.from_ref(ref, device="cpu")
    rate = model.front_end.sample_rate_hz
    audio = synthetic_take(rate)
    probs = model.run(model.front_end.log_mel(audio)[None])  # float32, one run
    frames = np.linspace(0, probs["onset"].shape[1] - 1, 8).astype(int)
    streamed = model.predict_all(model.front_end.stream([audio]))  # as transcribe decodes
    score = predictions_to_score(streamed, model, TranscribeOptions(), len(audio) / rate)
    return {"sha256": ref.card.sha256, "primer": [list(n) for n in AUDIO_NOTES],
            "first_logits": [round(float(v), 6) for name in ("onset", "frame")
                             for v in probs[name][0, frames].ravel()],
            "greedy_ids": [[n.pitch, round(n.start_s / model.front_end.frame_s)]
                           for n in score.notes]}


def recorded_sha256(path: Path) -> str | None:
    return json.loads(path.read_text())["sha256"] if path.exists() else None


def write_all(every: bool = False) -> None:
    """Rewrite the golden output of each bundled model whose file changed
    (its sha256 differs from the one recorded), or of all with `every`:
    an unchanged model recomputed on another CPU differs only in rounding."""
    from mtools.models.registry import list_models, resolve_model

    GOLDEN_DIR.mkdir(exist_ok=True)
    for card in list_models():
        path = GOLDEN_DIR / f"{card.stem}.json"
        if card.name not in FAMILIES or (not every and recorded_sha256(path) == card.sha256):
            continue
        path.write_text(json.dumps(golden_run(resolve_model(card.spec)), indent=1) + "\n")
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":  # --all: rewrite unchanged models' outputs too
    write_all(every="--all" in sys.argv[1:])
