"""Drums RNN (Magenta's drum_kit config): nine drum classes struck or not
at each 16th step, one of 512 sets, continued by an event RNN.

Velocities: Magenta writes every generated hit at one fixed velocity. Here
a new hit takes the median velocity that hits of its class had at that
16th of the bar in the training data (the card's `velocity_table`, 9 × 16),
scaled to the primer's own loudness for that class when the primer has
such hits, plus seeded Gaussian variation as wide as a drummer's own on
one cell (the card's `velocity_spread`: the standard deviation of hits
around their track's mean for the same drum and 16th, measured on the
training data). Primer hits keep their velocities.
"""

from __future__ import annotations

import numpy as np

from mtools.models.events import DrumTrack, drums_to_notes, primer_drum_track

DRUM_PITCHES_KEY = "drum_type_pitches"
TABLE_STEPS = 16  # velocity table positions: the 16ths of a 4/4 bar
FALLBACK_VELOCITY = 90
DEFAULT_SPREAD = 4.0  # MIDI units, for a card that measured no velocity_spread
KICK_ONLY = 1  # the bitmask a from-scratch groove starts with


def velocity_table(tracks: list[DrumTrack]) -> np.ndarray:
    """Median hit velocity per drum class and 16th of the bar over 4/4
    tracks: (classes, TABLE_STEPS) uint8; a cell with no hits takes its
    class's median, a class with none FALLBACK_VELOCITY."""
    classes = tracks[0].velocities.shape[1] if tracks else 9
    cells: list[list[list[int]]] = [[[] for _ in range(TABLE_STEPS)] for _ in range(classes)]
    for track in tracks:
        if track.steps_per_bar != TABLE_STEPS:
            continue
        steps, kinds = np.nonzero(track.velocities)
        for step, kind in zip(steps, kinds):
            cells[kind][(track.start_step + step) % TABLE_STEPS].append(
                int(track.velocities[step, kind]))
    table = np.full((classes, TABLE_STEPS), FALLBACK_VELOCITY, dtype=np.uint8)
    for kind in range(classes):
        everything = [v for cell in cells[kind] for v in cell]
        if not everything:
            continue
        overall = int(np.median(everything))
        table[kind] = [int(np.median(cell)) if cell else overall for cell in cells[kind]]
    return table


def velocity_spread(tracks: list[DrumTrack], min_hits: int = 3) -> float:
    """How much a drummer's velocity varies on one cell: the standard
    deviation of hits around their track's own mean for the same drum class
    and 16th of the bar, over cells with at least `min_hits` hits (4/4
    tracks)."""
    residuals = []
    for track in tracks:
        if track.steps_per_bar != TABLE_STEPS:
            continue
        steps, kinds = np.nonzero(track.velocities)
        cells = kinds * TABLE_STEPS + (track.start_step + steps) % TABLE_STEPS
        values = track.velocities[steps, kinds].astype(np.float64)
        counts = np.bincount(cells)
        means = np.bincount(cells, weights=values) / np.maximum(counts, 1)
        kept = counts[cells] >= min_hits
        residuals.append(values[kept] - means[cells[kept]])
    joined = np.concatenate([np.zeros(0), *residuals])
    return round(float(joined.std()), 2) if len(joined) else DEFAULT_SPREAD


def new_hit_velocities(events: np.ndarray, start_step: int, table: np.ndarray,
                       primer: DrumTrack, rng: np.random.Generator,
                       spread: float = DEFAULT_SPREAD) -> np.ndarray:
    """Velocities (steps, classes) for generated bitmask events that start at
    grid step `start_step` of the piece; `spread`: the standard deviation of
    the variation around each cell's velocity."""
    classes = table.shape[0]
    scale = np.ones(classes)
    for kind in range(classes):  # follow the primer's loudness per class
        played = primer.velocities[:, kind][primer.velocities[:, kind] > 0]
        if len(played):
            positions = np.flatnonzero(primer.velocities[:, kind]) % TABLE_STEPS
            scale[kind] = played.mean() / max(table[kind, positions].mean(), 1.0)
    positions = (start_step + np.arange(len(events))) % TABLE_STEPS
    base = table[:, positions].T * scale  # (steps, classes)
    jitter = rng.normal(0.0, spread, size=base.shape)
    struck = (np.asarray(events)[:, None] >> np.arange(classes)) & 1
    return np.where(struck, np.clip(np.round(base + jitter), 1, 127), 0).astype(np.uint8)


def continue_family(score, ref, options, rng: np.random.Generator):
    """Continue the drum track of `score` (see mtools.models.continuation)."""
    from mtools.models.continuation import ContinueResult, StepClock, place_continuation, \
        provenance
    from mtools.models.sequence import generate, load_event_rnn

    encoding = ref.card.encoding
    spq = int(encoding["steps_per_quarter"])
    pitches = [tuple(p) for p in encoding[DRUM_PITCHES_KEY]]
    table = np.asarray(encoding.get("velocity_table", np.full((len(pitches), TABLE_STEPS),
                                                              FALLBACK_VELOCITY)),
                       dtype=np.float64)  # a card that measured none: one plain velocity
    model = load_event_rnn(ref, device=options.device, rows=options.batch_rows)
    primer = primer_drum_track(score, steps_per_quarter=spq)
    has_hits = bool(np.any(primer.events))
    primer_ids = np.asarray(primer.events, np.int64) if has_hits else np.array([KICK_ONLY])
    qpm = primer.qpm  # continue_score gave a tempo-less primer --qpm as its tempo
    clock = StepClock(score, spq, qpm)
    num_steps = options.length.to_steps(primer.steps_per_bar, 60.0 / qpm / spq)
    rows = generate(model, primer_ids, num_steps - (0 if has_hits else 1),
                    num_outputs=options.num_outputs, options=options.search, rng=rng,
                    progress=options.progress)
    skip = len(primer_ids) if has_hits else 0  # the seed kick is the output's first step
    start = len(primer.events) if has_hits else 0
    instrument = _drum_instrument(score)
    made_by = provenance(ref, options)
    scores = []
    for row in rows:
        events = row[skip:]
        velocities = new_hit_velocities(events, start, table, primer, rng,
                                        float(encoding.get("velocity_spread", DEFAULT_SPREAD)))
        notes = drums_to_notes(events, step_s=1.0, velocities=velocities, type_pitches=pitches,
                               instrument=instrument)
        scores.append(place_continuation(score, notes, start, clock, options, made_by))
    warnings = ["no drums in the input: started from scratch"] if score.notes and not has_hits \
        else []
    return ContinueResult(scores, warnings)


def _drum_instrument(score) -> int:
    """The primer's drum instrument, else a new instrument number."""
    drums = [n.instrument for n in score.notes if n.is_drum]
    if drums:
        return drums[-1]
    return max((n.instrument for n in score.notes), default=-1) + 1
