"""`continue` for every sequence model: options, length arithmetic, and the
dispatch from a model card's family to the module that plays it."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from mtools.errors import UsageError
from mtools.models.sampling import numbered_takes, seeded
from mtools.models.sequence import SearchOptions
from mtools.score import Note, Score, Tempo, TempoMap, with_notes

DEFAULT_BARS = 8.0
TASK = "continue"

# Families (a card's "name") `continue` plays: each is a module under
# mtools.models with `continue_family(score, ref, options, rng) -> ContinueResult`.
FAMILIES = frozenset({"melody_rnn", "drums_rnn", "improv_rnn"})


@dataclass(frozen=True)
class Length:
    """How much to generate after the primer: one of bars, steps (grid
    steps) or seconds; none set means DEFAULT_BARS."""

    bars: float | None = None
    steps: int | None = None
    seconds: float | None = None

    @property
    def is_default(self) -> bool:
        return self.bars is None and self.steps is None and self.seconds is None

    def to_steps(self, steps_per_bar: int, step_s: float) -> int:
        """The length in grid steps; UsageError when it rounds to none."""
        if self.steps is not None:
            steps, asked = self.steps, f"--steps {self.steps}"
        elif self.seconds is not None:
            steps, asked = round(self.seconds / step_s), f"--seconds {self.seconds:g}"
        else:
            bars = DEFAULT_BARS if self.bars is None else self.bars
            steps, asked = round(bars * steps_per_bar), f"--bars {bars:g}"
        if steps < 1:
            raise UsageError(f"{asked} is less than one step of the grid: nothing to generate")
        return steps


@dataclass(frozen=True)
class ContinueOptions:
    """Everything `continue` takes besides the primer (see `mtools continue
    --help` for each option's meaning)."""

    model: str = "melody_rnn"
    length: Length = Length()
    temperature: float | None = None  # None: the model's own (`model_temperature`)
    beam_size: int = 1
    branch_factor: int = 1
    steps_per_iteration: int = 1
    num_outputs: int = 1
    seed: int | None = None
    qpm: float | None = None
    key: str | None = None
    program: int | None = None
    only_generated: bool = False
    device: str | None = None
    chords: str | None = None
    steps_per_chord: int | None = None
    render_chords: bool = False
    progress: Callable[[int, int], None] | None = field(default=None, compare=False)
    # progress(steps done, steps asked for), called as generation goes

    @property
    def batch_rows(self) -> int:
        """Sequences generated side by side: outputs × beams × branches."""
        return self.num_outputs * self.beam_size * self.branch_factor

    @property
    def search(self) -> SearchOptions:
        return SearchOptions(self.temperature, self.beam_size, self.branch_factor,
                             self.steps_per_iteration)


MAX_BATCH_ROWS = 4096  # sequences generated side by side (outputs × beams × branches)


@dataclass
class ContinueResult:
    scores: list[Score]
    warnings: list[str] = field(default_factory=list)


def continue_score(score: Score, options: ContinueOptions) -> ContinueResult:
    """Continue one primer score `options.num_outputs` times with the model
    named in options (a registry name or a path)."""
    ref = check_options(options)
    options = seeded(options)
    module = importlib.import_module(f"mtools.models.{ref.card.name}")
    if options.temperature is None:
        options = replace(options, temperature=model_temperature(ref.card))
    if options.qpm is not None and not score.tempos:  # a tempo-less primer plays at --qpm
        score = replace(score, tempos=(Tempo(0.0, options.qpm),))
    rng = np.random.default_rng(options.seed)
    result = module.continue_family(score, ref, options, rng)
    return replace(result, scores=numbered_takes(result.scores))


def check_options(options: ContinueOptions):
    """The model's registry entry, once it is known to be a `continue`
    family that uses every option given (an option it would ignore is a
    usage error, not a silent no-op)."""
    from mtools.models.registry import resolve_model

    ref = resolve_model(options.model, task=TASK)
    family = ref.card.name
    if family not in FAMILIES:
        raise UsageError(f"model {ref.card.spec} is not a model `continue` knows how to play",
                         hint=f"continue plays {', '.join(sorted(FAMILIES))}")
    unused = []
    if family != "improv_rnn":
        unused += [name for name, value in (("--chords", options.chords),
                                            ("--steps-per-chord", options.steps_per_chord),
                                            ("--render-chords", options.render_chords)) if value]
    if family != "melody_rnn" and options.key:
        unused.append("--key")
    if unused:
        raise UsageError(f"{' and '.join(unused)} {'does' if len(unused) == 1 else 'do'} nothing "
                         f"for {family}", hint="chords are for improv_rnn, --key for melody_rnn")
    if options.batch_rows > MAX_BATCH_ROWS:
        raise UsageError(f"-n × --beam-size × --branch-factor is {options.batch_rows} sequences "
                         f"side by side, more than the {MAX_BATCH_ROWS} that fit in memory",
                         hint="fewer outputs per run, or a smaller beam")
    return ref


def model_temperature(card) -> float:
    """The temperature a model samples at unless told otherwise: its card's
    `encoding.sampling.temperature` (chosen by benchmarks/bench_continue_stats.py
    so that continuations come closest to the validation data), else 1."""
    return float(card.encoding.get("sampling", {}).get("temperature", 1.0))


class StepClock:
    """Grid steps → seconds under the primer's tempo map (or `qpm` when the
    primer has no tempo)."""

    def __init__(self, score: Score, steps_per_quarter: int, qpm: float):
        self.tempo = TempoMap(score.tempos) if score.tempos else None
        self.steps_per_quarter, self.qpm = steps_per_quarter, qpm

    def seconds(self, step: float) -> float:
        if self.tempo is not None:
            return self.tempo.seconds_at(step / self.steps_per_quarter)
        return step * 60.0 / self.qpm / self.steps_per_quarter


def place_continuation(score: Score, step_notes: list[Note], start_step: int, clock: StepClock,
                       options: ContinueOptions, provenance: dict,
                       edit_primer: Callable[[list[Note]], list[Note]] | None = None) -> Score:
    """The output score: `step_notes` (times in grid steps from the end of
    the primer, `start_step`) placed after the primer, whose notes
    `edit_primer` may change (a held note lengthened); or, with
    options.only_generated, the new notes alone from time 0."""
    origin = 0.0 if options.only_generated else clock.seconds(start_step)
    begin = clock.seconds(start_step)
    new_notes = [replace(n, start_s=clock.seconds(start_step + n.start_s) - begin + origin,
                         end_s=clock.seconds(start_step + n.end_s) - begin + origin)
                 for n in step_notes]
    if options.only_generated:
        return Score(notes=tuple(new_notes), tempos=score.tempos[:1],
                     time_signatures=score.time_signatures[:1],
                     total_s=max((n.end_s for n in new_notes), default=0.0),
                     provenance=provenance)
    kept = list(score.notes) if edit_primer is None else edit_primer(list(score.notes))
    return replace(with_notes(score, kept + new_notes), provenance=provenance)


def provenance(ref, options: ContinueOptions) -> dict:
    """What made an output: written under the JSONL's "mtools" key."""
    return {"model": ref.card.spec, "seed": options.seed, "temperature": options.temperature,
            "beam_size": options.beam_size}
