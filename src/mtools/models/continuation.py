"""`continue` for every sequence model: options, length arithmetic, and the
dispatch from a model card's family to the module that plays it."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from mtools.errors import UsageError
from mtools.models.sequence import SearchOptions
from mtools.score import Score

DEFAULT_BARS = 8.0
TASK = "continue"

# family name (a card's "name") → module under mtools.models with a
# `continue_family(score, ref, options, rng) -> ContinueResult` function
FAMILIES = {"melody_rnn": "melody_rnn", "drums_rnn": "drums_rnn", "improv_rnn": "improv_rnn"}


@dataclass(frozen=True)
class Length:
    """How much to generate after the primer: one of bars, steps (grid
    steps) or seconds; none set means DEFAULT_BARS."""

    bars: float | None = None
    steps: int | None = None
    seconds: float | None = None

    def to_steps(self, steps_per_bar: int, step_s: float) -> int:
        """The length in grid steps (at least 1)."""
        if self.steps is not None:
            return max(1, self.steps)
        if self.seconds is not None:
            return max(1, round(self.seconds / step_s))
        bars = DEFAULT_BARS if self.bars is None else self.bars
        return max(1, round(bars * steps_per_bar))


@dataclass(frozen=True)
class ContinueOptions:
    """Everything `continue` takes besides the primer (see `mtools continue
    --help` for each option's meaning)."""

    model: str = "melody_rnn"
    length: Length = Length()
    temperature: float = 1.0
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

    @property
    def search(self) -> SearchOptions:
        return SearchOptions(self.temperature, self.beam_size, self.branch_factor,
                             self.steps_per_iteration)


@dataclass
class ContinueResult:
    scores: list[Score]
    warnings: list[str] = field(default_factory=list)


def continue_score(score: Score, options: ContinueOptions) -> ContinueResult:
    """Continue one primer score `options.num_outputs` times with the model
    named in options (a registry name or a path)."""
    from mtools.models.registry import resolve_model

    ref = resolve_model(options.model, task=TASK)
    module_name = FAMILIES.get(ref.card.name)
    if module_name is None:
        raise UsageError(f"model {ref.card.spec} is not a model `continue` knows how to play",
                         hint=f"continue plays {', '.join(sorted(FAMILIES))}")
    module = importlib.import_module(f"mtools.models.{module_name}")
    rng = np.random.default_rng(options.seed)
    return module.continue_family(score, ref, options, rng)
