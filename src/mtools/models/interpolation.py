"""`mtools interpolate` as library calls: take a window of each input,
encode it (the posterior mean, then `fit_rounds` rounds of search for a
latent vector that decodes closer to the window: fit_latents), walk the
sphere between the two latent vectors, decode every point; or decode draws
from the prior.

A window is the model's length (2 bars of 4/4 for the 2-bar configs) of
the input's top line (melody configs), its bass line (a melody config
whose space's line is "bass": a trio's bass, else the lowest note of the
one line), of its drum hits (drum configs) or of all three (trio: the bass
is the General MIDI bass track, else the lowest of several pitched tracks;
the melody the top line of the rest), starting on a bar line: the first
bar with a note, or the bar asked for.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field

import numpy as np

from mtools.errors import InputFormatError, UsageError
from mtools.models.music_vae import MusicVae, VaeSpace, restrike, slerp
from mtools.models.sampling import seeded
from mtools.score import Score, Tempo, TimeSignature, make_score

FAMILIES = ("music_vae",)
DEFAULT_QPM = 120.0
MELODY_VELOCITY = 90
DRUM_VELOCITY = 100
TRIO_BASS_PROGRAM = 33  # electric bass (finger), as the trio data's MMA basses mostly are
# fit_latents: rounds, draws a round, and how the spread (in posterior SDs) shrinks a round
FIT_ROUNDS, FIT_CANDIDATES, FIT_SHRINK = 3, 16, 0.7


@dataclass(frozen=True)
class InterpolateOptions:
    """What interpolate takes besides the inputs (see its --help)."""

    model: str = "music_vae"
    steps: int = 8  # points from A to B, both ends included
    temperature: float = 0.5
    seed: int | None = None
    concat: bool = True
    program: int = 0
    device: str | None = None
    fit_rounds: int = FIT_ROUNDS  # 0: the posterior means, as Magenta


@dataclass(frozen=True)
class Window:
    """One input's window: ids (steps,), where it was taken, its tempo."""

    ids: np.ndarray
    name: str
    first_bar: int  # 1-based
    qpm: float


@dataclass
class VaeResult:
    scores: list[Score]
    latents: list[dict]
    warnings: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=4)
def load(model: str, device: str | None, task: str = "interpolate") -> tuple[MusicVae, object]:
    """The model, loaded once per process."""
    from mtools.models.registry import resolve_model

    ref = resolve_model(model, task=task)
    if ref.card.name not in FAMILIES:
        raise UsageError(f"model {ref.card.spec} is not a model `{task}` knows how to play",
                         hint=f"{task} plays {', '.join(FAMILIES)}")
    return MusicVae.from_ref(ref, device=device), ref


def take_window(score: Score, space: VaeSpace, name: str, bar: int | None = None
                ) -> tuple[Window, list[str]]:
    """The window of `score` the model encodes, and warnings about the
    choice. InputFormatError when there is nothing the model can read."""
    from mtools.models.events import primer_drum_track, primer_melody

    if space.kind == "drums":
        line = primer_drum_track(score, steps_per_quarter=space.steps_per_quarter)
        events = np.asarray(line.events)
        starts = np.flatnonzero(events > 0)
        missing = "no drum notes (General MIDI drums, MIDI channel 10)"
    elif space.kind == "trio":
        line, events = trio_events(score, space.steps_per_quarter)
        starts = np.flatnonzero((events[:, :2] >= 0).any(axis=1) | (events[:, 2] > 0))
        missing = "no notes for a trio (melody, bass or drums)"
    elif space.line == "bass":  # a trio's bass; else the lowest line of the one track
        line, events = trio_events(score, space.steps_per_quarter)
        events = events[:, 1]
        if not np.any(events >= 0):
            line, events = lowest_line(score, space.steps_per_quarter)
        starts = np.flatnonzero(events >= 0)
        missing = "no pitched notes to take a bass line from"
    else:
        line = primer_melody(score, steps_per_quarter=space.steps_per_quarter)
        events = np.asarray(line.events)
        starts = np.flatnonzero(events >= 0)
        missing = "no pitched notes to take a melody from"
    if not len(starts):
        raise InputFormatError(f"{name}: {missing}")
    bar_steps = line.steps_per_bar
    total_bars = max(1, -(-len(events) // bar_steps))
    first = int(starts[0]) // bar_steps if bar is None else bar - 1
    if first >= total_bars:
        raise UsageError(f"--window: {name} has {total_bars} bar(s), no bar {bar}")
    short = max(0, first * bar_steps + space.steps - len(events))
    padded = pad_events(events, len(events) + short, space.kind)
    ids = restrike(space.ids_from_events(padded), first * bar_steps, space)
    window_bars = space.steps / bar_steps
    last_bar = first + int(np.ceil(window_bars))
    if not space.has_notes(ids):
        raise InputFormatError(f"{name}: bars {first + 1}-{last_bar} hold no notes",
                               hint="choose a bar with --window BAR")
    warnings = []
    if bar_steps != 16:
        num, den = line.time_signature
        warnings.append(f"{name} is in {num}/{den}; the model reads {space.steps} 16th notes "
                        f"(bars {first + 1}-{last_bar} here)")
    elif bar is None and total_bars > window_bars:  # (a window asked for needs no word)
        warnings.append(f"{name}: took bars {first + 1}-{last_bar} of {total_bars} "
                        f"(the model reads {window_bars:g}; --window BAR takes others)")
    if bar_steps == 16 and short >= bar_steps:
        warnings.append(f"{name}: {short // bar_steps} bar(s) of silence after its bar "
                        f"{total_bars} fill the model's {window_bars:g}")
    elif short >= 16:  # other meters: the model's window is in 4/4 bars
        warnings.append(f"{name}: {short} 16th notes of silence after its end fill the "
                        f"model's {space.steps}")
    return Window(ids, name, first + 1, line.qpm), warnings


def pad_events(events: np.ndarray, steps: int, kind: str) -> np.ndarray:
    """A line's events padded with silence to `steps`: melody events (a
    note still sounding at the old end is ended there), drum bitmasks, or
    a trio's (steps, 3) of both kinds."""
    from mtools.models.events import set_melody_length

    if kind == "trio":
        return np.stack([pad_events(events[:, 0], steps, "melody"),
                         pad_events(events[:, 1], steps, "melody"),
                         pad_events(events[:, 2], steps, "drums")], axis=1)
    if kind == "drums":
        return np.concatenate([events, np.zeros(steps - len(events), events.dtype)])
    return set_melody_length(events, steps).astype(events.dtype)


def lowest_line(score: Score, steps_per_quarter: int):
    """(the GridLine, its events) of the lowest sounding pitched note at
    each step: primer_melody's top line of the score turned upside down,
    turned back."""
    from dataclasses import replace

    from mtools.models.events import primer_melody

    flipped = tuple(replace(n, pitch=127 - n.pitch) for n in score.notes if not n.is_drum)
    line = primer_melody(replace(score, notes=flipped), steps_per_quarter=steps_per_quarter)
    events = np.asarray(line.events, np.int64)
    return line, np.where(events >= 0, 127 - events, events)


def trio_events(score: Score, steps_per_quarter: int):
    """(the melody's GridLine, (steps, 3) events of melody, bass and drums)
    of a whole score, to its last note: the bass is its General MIDI bass
    track(s), else the lowest-sounding of two or more pitched tracks; the
    melody is the top line of the other pitched tracks."""
    from dataclasses import replace

    from mtools.models.events import BASS_PROGRAMS, primer_drum_track, primer_melody

    pitched = [n for n in score.notes if not n.is_drum]
    tracks = {n.instrument for n in pitched}
    bass_tracks = {n.instrument for n in pitched if n.program in BASS_PROGRAMS}
    if not bass_tracks and len(tracks) > 1:
        bass_tracks = {min(tracks, key=lambda t: np.mean([n.pitch for n in pitched
                                                          if n.instrument == t]))}
    melody = [n for n in pitched if n.instrument not in bass_tracks]
    bass = [n for n in pitched if n.instrument in bass_tracks]
    drums = primer_drum_track(score, steps_per_quarter=steps_per_quarter)
    lines = [primer_melody(replace(score, notes=tuple(notes)), steps_per_quarter=steps_per_quarter)
             for notes in (melody, bass)]
    parts = [np.asarray(line.events, np.int64) for line in (*lines, drums)]
    steps = max(map(len, parts))
    return lines[0], np.stack([pad_events(events, steps, kind)
                               for events, kind in zip(parts, ("melody", "melody", "drums"))],
                              axis=1)


def interpolate(first: Window, second: Window, options: InterpolateOptions) -> VaeResult:
    """Decode `options.steps` points on the sphere from first's latent
    vector to second's: the two ends greedily (they are the reconstructions
    of A and B), the points between at the temperature."""
    model, ref = load(options.model, options.device)
    options = seeded(options)
    fractions = np.linspace(0.0, 1.0, options.steps)
    z, rows = path(model, np.stack([first.ids, second.ids]), options)
    latents = [{"index": i, "fraction": round(float(f), 6), "z": _floats(row)}
               for i, (f, row) in enumerate(zip(fractions, z))]
    made_by = _provenance(ref, options, inputs=[first.name, second.name],
                          windows=[first.first_bar, second.first_bar],
                          fit_rounds=options.fit_rounds)
    return VaeResult(windows_to_scores(rows, model.space, first.qpm, options, made_by), latents)


def path(model: MusicVae, ends: np.ndarray, options: InterpolateOptions
         ) -> tuple[np.ndarray, np.ndarray]:
    """The latent points (steps, z) from window ends[0] to ends[1] (class
    ids, (2, steps)) and their decodings."""
    fit = fit_latents(model, ends, rounds=options.fit_rounds)
    z = slerp(fit.z[0], fit.z[1], np.linspace(0.0, 1.0, options.steps)).astype(np.float32)
    between = fit.decoded[:0] if options.steps == 2 else model.decode(
        z[1:-1], temperature=options.temperature, rng=np.random.default_rng(options.seed))
    return z, np.concatenate([fit.decoded[:1], between, fit.decoded[1:]])


@dataclass(frozen=True)
class Fit:
    """fit_latents' answer, a row per window: the latent vector, its
    greedy decoding, and the share of the window's cells that gets right."""

    z: np.ndarray
    decoded: np.ndarray
    right: np.ndarray


def fit_latents(model: MusicVae, ids: np.ndarray, *, rounds: int = FIT_ROUNDS,
                candidates: int = FIT_CANDIDATES, seed: int = 0) -> Fit:
    """Latent rows that reproduce windows (n, steps) of class ids better
    than their posterior means. Each round decodes `candidates` draws
    around each window's best point so far (mean + spread · sigma · noise,
    the spread shrinking by FIT_SHRINK a round) greedily and keeps a draw
    that gets more cells right; a window decoded perfectly stops. The
    encoder's one-shot guess leaves steps that a nearby z decodes right
    (the amortization gap; semi-amortized inference, searched here rather
    than followed by gradient). Each window draws from its own stream (the
    seed and its ids), so its fit does not depend on the other windows."""
    if model.space.kind == "groove":
        raise ValueError("fit_latents counts right classes; a groove's frames have none")
    ids = np.asarray(ids, np.int64)
    mu, sigma = model.encode(ids)
    truth = model.space.parts(ids)
    best, decoded = mu.astype(np.float32), model.decode(mu, temperature=0)
    right = _share_right(model, decoded, truth)
    streams = [np.random.default_rng([seed, zlib.crc32(row.tobytes())]) for row in ids]
    spread = 1.0
    for _ in range(rounds):
        open_rows = np.flatnonzero(right < 1)
        if not len(open_rows):
            break
        noise = np.stack([streams[i].standard_normal((candidates, model.z_size)) for i in open_rows])
        tries = (best[open_rows, None] + spread * sigma[open_rows, None] * noise).astype(np.float32)
        made = model.decode(tries.reshape(-1, model.z_size), temperature=0)
        shares = _share_right(model, made, np.repeat(truth[open_rows], candidates, axis=0))
        shares = shares.reshape(len(open_rows), candidates)
        made = made.reshape(len(open_rows), candidates, *made.shape[1:])
        pick = shares.argmax(axis=1)
        better = shares[np.arange(len(open_rows)), pick] > right[open_rows]
        rows, picked = open_rows[better], pick[better]
        best[rows], decoded[rows] = tries[better, picked], made[better, picked]
        right[rows] = shares[better, picked]
        spread *= FIT_SHRINK
    return Fit(best, decoded, right)


def _share_right(model: MusicVae, decoded: np.ndarray, truth_parts: np.ndarray) -> np.ndarray:
    return (model.space.parts(decoded) == truth_parts).mean(axis=(1, 2))


def sample(count: int, options: InterpolateOptions) -> VaeResult:
    """Decode `count` draws of z from the prior N(0, I)."""
    model, ref = load(options.model, options.device)
    options = seeded(options)
    rng = np.random.default_rng(options.seed)
    z = rng.standard_normal((count, model.z_size)).astype(np.float32)
    rows = model.decode(z, temperature=options.temperature, rng=rng)
    latents = [{"index": i, "z": _floats(row)} for i, row in enumerate(z)]
    made_by = _provenance(ref, options, sampled=count)
    return VaeResult(windows_to_scores(rows, model.space, DEFAULT_QPM, options, made_by), latents)


def _floats(row: np.ndarray) -> list[float]:
    return [round(float(x), 6) for x in row]


def _provenance(ref, options: InterpolateOptions, **extra) -> dict:
    return {"model": ref.card.spec, "seed": options.seed, "temperature": options.temperature,
            **extra}


def windows_to_scores(rows: np.ndarray, space: VaeSpace, qpm: float, options: InterpolateOptions,
            made_by: dict) -> list[Score]:
    """Decoded windows as scores: one score of them back to back
    (options.concat), or one score each."""
    groups = [np.concatenate(list(rows))] if options.concat else list(rows)
    return [_window_score(space.events_from_ids(ids), space, qpm, options.program, made_by)
            for ids in groups]


def _window_score(events: np.ndarray, space: VaeSpace, qpm: float, program: int,
                  made_by: dict) -> Score:
    from mtools.models.events import drums_to_notes, melody_to_notes

    step_s = 60.0 / qpm / space.steps_per_quarter
    if space.kind == "drums":
        notes = drums_to_notes(events, step_s=step_s, velocity=DRUM_VELOCITY)
    elif space.kind == "trio":
        notes = (melody_to_notes(events[:, 0], step_s=step_s, velocity=MELODY_VELOCITY,
                                 program=program)
                 + melody_to_notes(events[:, 1], step_s=step_s, velocity=MELODY_VELOCITY,
                                   program=TRIO_BASS_PROGRAM, instrument=1)
                 + drums_to_notes(events[:, 2], step_s=step_s, velocity=DRUM_VELOCITY))
    else:
        notes = melody_to_notes(events, step_s=step_s, velocity=MELODY_VELOCITY, program=program)
    return make_score(notes, tempos=(Tempo(0.0, qpm),), time_signatures=(TimeSignature(0.0),),
                      total_s=len(events) * step_s, provenance=dict(made_by))
