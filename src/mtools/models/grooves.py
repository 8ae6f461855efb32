"""`mtools humanize` and `mtools drumify` as library calls, with GrooVAE
(Gillick et al. 2019, "Learning to Groove with Inverse Sequence
Transformations"): a drum part (or any rhythm) is cut into the model's
2-bar windows from the score's start; each window is encoded and decoded
as velocities and timing (humanize: the input's hits are kept, only how
they are played changes) or as a whole drum groove (drumify: the model
chooses the drums, following the rhythm's onsets).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mtools.errors import InputFormatError, UsageError
from mtools.models.events import DRUM_TYPE_PITCHES, NUM_DRUM_CLASSES, drum_class, \
    primer_drum_track
from mtools.models.music_vae import GROOVE_SIZE, MusicVae, frames_to_hits, groove_frames
from mtools.models.sampling import numbered_takes, seeded
from mtools.score import Note, Score, TempoMap, grid_steps, nearest_step, with_notes

HUMANIZE, DRUMIFY = "humanize", "drumify"
ENCODER_FOR_TASK = {HUMANIZE: "quantized", DRUMIFY: "tap"}


@dataclass(frozen=True)
class GrooveOptions:
    """What humanize/drumify take besides the input (see their --help).
    temperature: how far z strays from each window's posterior mean (in
    posterior standard deviations) and, for drumify, how freely hits are
    drawn; 0 is the model's most likely reading."""

    model: str
    task: str = HUMANIZE
    temperature: float = 0.5
    num_outputs: int = 1
    seed: int | None = None
    device: str | None = None


@dataclass
class GrooveResult:
    scores: list[Score]
    warnings: list[str]


def load(options: GrooveOptions) -> tuple[MusicVae, object]:
    from mtools.models.interpolation import load as load_vae

    model, ref = load_vae(options.model, options.device, options.task)
    wanted = ENCODER_FOR_TASK[options.task]
    if model.space.kind != "groove" or model.space.encoder != wanted:
        raise UsageError(f"model {ref.card.spec} does not {options.task}",
                         hint=f"{options.task} needs a GrooVAE trained on {wanted} input "
                              f"(music_vae:{'groovae' if options.task == HUMANIZE else 'groovae_tap'})")
    return model, ref


def groove_score(score: Score, options: GrooveOptions) -> GrooveResult:
    """The score with its drum part humanized (or a drum part made from its
    rhythm), `options.num_outputs` times."""
    model, ref = load(options)
    options = seeded(options)
    space = model.space
    frames, warnings = (_drum_frames if options.task == HUMANIZE else _tap_frames)(score, space)
    windows = -(-len(frames) // space.steps)
    padded = np.zeros((windows * space.steps, GROOVE_SIZE), np.float32)
    padded[:len(frames)] = frames
    batch = padded.reshape(windows, space.steps, GROOVE_SIZE)
    mu, sigma = model.encode(batch)
    rng = np.random.default_rng(options.seed)
    made_by = {"model": ref.card.spec, "seed": options.seed, "temperature": options.temperature}
    scores = []
    for _ in range(options.num_outputs):
        z = mu + options.temperature * sigma * rng.standard_normal(mu.shape).astype(np.float32)
        hits = batch[..., :NUM_DRUM_CLASSES] > 0.5 if options.task == HUMANIZE else None
        decoded = model.decode(z, temperature=options.temperature, rng=rng, hits=hits)
        played = decoded.reshape(-1, GROOVE_SIZE)[:len(frames)]
        place = _humanized if options.task == HUMANIZE else _with_drums
        scores.append(place(score, played, space.steps_per_quarter, made_by))
    return GrooveResult(numbered_takes(scores), warnings)


def _drum_frames(score: Score, space) -> tuple[np.ndarray, list[str]]:
    track = primer_drum_track(score, steps_per_quarter=space.steps_per_quarter, timing=True)
    if not np.any(track.events):
        raise InputFormatError("no drum notes to humanize (General MIDI drum keys on MIDI "
                               "channel 10)", hint="drumify makes drums from any rhythm")
    warnings = [] if track.steps_per_bar == 16 else [
        f"the model learned 4/4 grooves; this is {track.time_signature[0]}/"
        f"{track.time_signature[1]}"]
    return groove_frames(track, 0, len(track.events)), warnings


def _tap_frames(score: Score, space) -> tuple[np.ndarray, list[str]]:
    """Every note onset of the input as a tap on channel 0, with its offset
    from the grid (the loudest onset of a step wins)."""
    tempo = TempoMap(score.tempos)
    spq = space.steps_per_quarter
    onsets = []
    for note in score.notes:
        if note.velocity > 0:
            exact = tempo.quarters_at(note.start_s) * spq
            onsets.append((nearest_step(exact), note.velocity, exact - nearest_step(exact)))
    if not onsets:
        raise InputFormatError("no notes to take a rhythm from")
    steps = max(max(o[0] for o in onsets) + 1,
                int(round(tempo.quarters_at(score.total_s) * spq)))
    frames = np.zeros((steps, GROOVE_SIZE), np.float32)
    loudest = np.zeros(steps)
    n = NUM_DRUM_CLASSES
    for step, velocity, offset in sorted(onsets):
        frames[step, 0] = 1.0
        if velocity > loudest[step]:
            loudest[step] = velocity
            frames[step, 2 * n] = np.clip(offset * 2, -1, 1)
    return frames, []


def _humanized(score: Score, frames: np.ndarray, steps_per_quarter: int, made_by: dict) -> Score:
    """The score's own drum notes (keys, lengths and all), each played with
    the velocity and offset the model gave its class at its step; notes of
    no drum class are left as they were."""
    events, velocities, offsets = frames_to_hits(frames)
    tempo = TempoMap(score.tempos)
    notes = []
    for note, (step, _) in zip(score.notes, grid_steps(score, steps_per_quarter)):
        index = drum_class(note.pitch) if note.is_drum and note.velocity > 0 else None
        if index is None or step >= len(events) or not events[step] >> index & 1:
            notes.append(note)
            continue
        start = tempo.seconds_at(max((step + float(offsets[step, index])) / steps_per_quarter, 0.0))
        notes.append(replace(note, start_s=start, end_s=note.end_s + start - note.start_s,
                             velocity=int(velocities[step, index]), start_step=None,
                             end_step=None))
    out = with_notes(replace(score, steps_per_quarter=None), notes)
    return replace(out, total_s=max(score.total_s, max((n.end_s for n in notes), default=0.0)),
                   provenance=dict(made_by))


def _with_drums(score: Score, frames: np.ndarray, steps_per_quarter: int, made_by: dict) -> Score:
    """The score with its drum notes replaced by the played frames'."""
    events, velocities, offsets = frames_to_hits(frames)
    tempo = TempoMap(score.tempos)
    step_quarters = 1.0 / steps_per_quarter
    notes = [n for n in score.notes if not n.is_drum]
    for step in np.flatnonzero(events):
        for index in range(NUM_DRUM_CLASSES):
            if events[step] >> index & 1:
                at = (step + float(offsets[step, index])) * step_quarters
                start = tempo.seconds_at(max(at, 0.0))
                end = tempo.seconds_at(max(at, 0.0) + step_quarters)
                notes.append(Note(DRUM_TYPE_PITCHES[index][0], int(velocities[step, index]),
                                  start, end, 0, 9, True))
    out = with_notes(replace(score, steps_per_quarter=None), notes)
    return replace(out, total_s=max(score.total_s, max((n.end_s for n in notes), default=0.0)),
                   provenance=dict(made_by))
