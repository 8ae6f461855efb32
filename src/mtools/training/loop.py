"""The training loop every sequence model shares: random crops of event
sequences, Adam with gradient clipping, periodic validation, early stopping
on validation loss, and checkpoints that let a stopped run resume.

Library code: progress goes through a callback, nothing is printed.
A run folder holds `last.pt` (resume from here, with the optimizer's
state) and `best.pt` (the weights of the lowest validation loss so far),
both plain data on the CPU (see `mtools.training.nets`), whatever device
trained them.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from mtools.models.encoding import LookbackEncoding
from mtools.training.nets import build_module
from mtools.training.tasks import Example

# History.stopped of a run that trained and then ended without reaching a
# limit: killed, or stopped by hand (its card says so instead of inheriting
# the reason an earlier run of the same folder stopped for)
INTERRUPTED = "interrupted (killed or stopped by hand)"

@dataclass(frozen=True)
class TrainConfig:
    """batch_size: crops per step; crop_steps: events per crop; align: crops
    start on multiples of this (a bar, so metric counters stay true);
    learning_rate, clip_norm: Adam and gradient-norm clipping;
    eval_every: steps between validations; patience: validations without
    improvement before stopping; max_steps/max_minutes: hard limits;
    checkpoint_every_s: seconds between `last.pt` writes; seed; device:
    where torch trains ("cpu", "cuda", "cuda:1"); resume_learning_rate: a
    resumed run continues at this learning rate instead of where its
    plateau decay left it (the change goes in the history), None: as saved."""

    batch_size: int = 64
    crop_steps: int = 128
    align: int = 16
    learning_rate: float = 1e-3
    lr_decay: float = 0.5
    clip_norm: float = 3.0
    eval_every: int = 250
    patience: int = 6
    max_steps: int = 200_000
    max_minutes: float = 600.0
    checkpoint_every_s: float = 180.0
    valid_crops: int = 512
    seed: int = 0
    device: str = "cpu"
    resume_learning_rate: float | None = None


def loop_words(config: TrainConfig, default: TrainConfig) -> list[str]:
    """The `mtools train` options that set config's loop where it differs
    from the trainer's default (batch size, learning rate)."""
    words = []
    if config.batch_size != default.batch_size:
        words += ["--batch-size", str(config.batch_size)]
    if config.learning_rate != default.learning_rate:
        words += ["--learning-rate", f"{config.learning_rate:g}"]
    return words


@dataclass
class History:
    step: int = 0
    best_valid: float = math.inf
    best_step: int = 0
    evals_without_gain: int = 0
    seconds: float = 0.0
    log: list = field(default_factory=list)
    learning_rate: float | None = None  # the rate the run started at
    learning_rate_changes: list = field(default_factory=list)  # {"step", "learning_rate", "was"}
    # why the last run() ended: "early stop", "max steps", "max minutes", or
    # INTERRUPTED while it trains (what its checkpoints say if it is killed)
    stopped: str | None = None


class CropSampler:
    """Batches of crops from examples: inputs (batch, time, control_size +
    input_size), labels (batch, time) and mask (batch, time). `augment`
    (rng, example) → example may transpose or otherwise vary a piece."""

    def __init__(self, examples: Sequence[Example], encoding: LookbackEncoding,
                 config: TrainConfig, augment: Callable | None = None):
        self.examples = [e for e in examples if len(e.ids) > 1]
        self.encoding, self.config, self.augment = encoding, config, augment
        lengths = np.array([len(e.ids) for e in self.examples], dtype=np.float64)
        self.weights = lengths / lengths.sum()  # every step equally likely
        self.context = None if encoding.needs_full_history else max(encoding.lookbacks, default=0)
        self._memories: dict[int, tuple] = {}  # id(example) → (example, its states every align)

    def crop(self, example: Example, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and labels for positions start.. of one example, at most
        crop_steps of them, with lookback context from before the crop."""
        return self.crops([(example, start)])[0]

    def crops(self, chosen: list[tuple[Example, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """crop() of each (example, start). An encoding that reads the whole
        history (the key estimate) encodes them as one batch from each
        piece's remembered state at its crop where it can (_from_memories):
        read from each piece's start instead, its per-step numpy overhead
        was paid for every event before the crop."""
        ends = [min(len(example.ids), start + self.config.crop_steps + 1)
                for example, start in chosen]
        firsts = [0 if self.context is None else max(0, start - self.context)
                  for _, start in chosen]
        if self.context is None and self._remembers(chosen):
            inputs = self._from_memories(chosen, ends)
        else:
            inputs = [self.encoding.inputs(example.ids[first:end - 1], start - first, offset=first)
                      for (example, start), first, end in zip(chosen, firsts, ends)]
        out = []
        for (example, start), first, end, rows in zip(chosen, firsts, ends, inputs):
            labels = self.encoding.labels(example.ids[first:end])[start - first:]
            if example.control is not None:
                rows = np.concatenate([example.control[start + 1:end], rows], axis=1)
            out.append((rows, labels))
        return out

    def _remembers(self, chosen) -> bool:
        """Whether crops can start from remembered encoder states: the
        encoding keeps them, pieces are not varied per crop, crops start on
        a bar."""
        return (self.augment is None and hasattr(self.encoding, "memories_at")
                and all(start % self.config.align == 0 for _, start in chosen))

    def _from_memories(self, chosen, ends) -> list[np.ndarray]:
        """Inputs of crops that start on bars, encoded together from each
        piece's state at its crop (read once per piece, then remembered):
        the cost no longer grows with how far into a long piece a crop is."""
        context, align = max(self.encoding.lookbacks, default=0), self.config.align
        states = []
        for example, start in chosen:
            known = self._memories.get(id(example))
            if known is None or known[0] is not example:
                known = (example, self.encoding.memories_at(example.ids, align))
                self._memories[id(example)] = known
            states.append(known[1].take([start // align]))
        width = context + max(end - 1 - start for (_, start), end in zip(chosen, ends))
        windows = np.full((len(chosen), width), -1, np.int64)  # -1: before a piece, no repeat
        for row, ((example, start), end) in enumerate(zip(chosen, ends)):
            first = max(0, start - context)
            windows[row, context - (start - first):context + end - 1 - start] = \
                example.ids[first:end - 1]
        offsets = np.array([start - context for _, start in chosen])
        encoded, _ = self.encoding.inputs_from(windows, context, type(states[0]).concat(states),
                                               offset=offsets)
        return [encoded[row, :end - 1 - start]
                for row, ((_, start), end) in enumerate(zip(chosen, ends))]

    def batch(self, rng: np.random.Generator):
        picks = rng.choice(len(self.examples), size=self.config.batch_size, p=self.weights)
        chosen = []
        for index in picks:
            example = self.examples[index]
            if self.augment is not None:
                example = self.augment(rng, example)
            slots = max(1, (len(example.ids) - 1) // self.config.align)
            chosen.append((example, int(rng.integers(slots)) * self.config.align))
        return _stack(self.crops(chosen))

    def fixed_batches(self, count: int, seed: int = 1234):
        """The same `count` crops every time (validation), in batches."""
        rng = np.random.default_rng(seed)
        chosen = []
        for _ in range(count):
            example = self.examples[rng.choice(len(self.examples), p=self.weights)]
            slots = max(1, (len(example.ids) - 1) // self.config.align)
            chosen.append((example, int(rng.integers(slots)) * self.config.align))
        size = self.config.batch_size
        return [_stack(self.crops(chosen[i:i + size])) for i in range(0, len(chosen), size)]


def _stack(crops: list[tuple[np.ndarray, np.ndarray]]):
    longest = max(len(labels) for _, labels in crops)
    width = crops[0][0].shape[1]
    inputs = np.zeros((len(crops), longest, width), np.float32)
    labels = np.zeros((len(crops), longest), np.int64)
    mask = np.zeros((len(crops), longest), np.float32)
    for row, (x, y) in enumerate(crops):
        inputs[row, :len(y)], labels[row, :len(y)], mask[row, :len(y)] = x, y, 1.0
    return torch.from_numpy(inputs), torch.from_numpy(labels), torch.from_numpy(mask)


def masked_loss(model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over unmasked steps, and the number of them."""
    inputs, labels, mask = batch
    state = [s.to(inputs.device) for s in model.zero_state(inputs.shape[0])]
    logits = model(inputs, *state)[0]
    losses = nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
    count = mask.sum()
    return (losses * mask).sum() / count.clamp(min=1), count


def evaluate(model: nn.Module, batches, loss_fn: Callable = masked_loss) -> float:
    """Mean loss (nats per step for event models) over fixed batches."""
    model.eval()
    total, count = 0.0, 0.0
    with torch.no_grad():
        for batch in batches:
            loss, n = loss_fn(model, batch)
            total, count = total + float(loss) * float(n), count + float(n)
    model.train()
    return total / max(count, 1.0)


class Trainer:
    """Trains `model` on `train` crops, validating on `valid` crops, saving
    into `run_dir`. `progress(history, message)` is called after each
    validation. Resumes from run_dir/last.pt when it exists. `train` and
    `valid` need `batch(rng)` and `fixed_batches(count)`; `loss_fn(model,
    batch)` → (mean loss, weight) defaults to the event models' loss; a
    loss_fn with a `start_step(step)` method hears the step number before
    each training step (a schedule that follows training, resumes included).
    `validate_first`: validate the weights before the first step (a run
    that starts from trained weights then never ends worse than them)."""

    def __init__(self, model: nn.Module, kind: str, train: CropSampler, valid: CropSampler,
                 config: TrainConfig, run_dir: Path, extra: dict | None = None,
                 progress: Callable | None = None, loss_fn: Callable = masked_loss,
                 validate_first: bool = False):
        self.device = torch.device(config.device)
        self.model, self.kind, self.train_data, self.config = model.to(self.device), kind, train, \
            config
        self.loss_fn, self.validate_first = loss_fn, validate_first
        self.valid_batches = [to_device(b, self.device)
                              for b in valid.fixed_batches(config.valid_crops)]
        self.run_dir, self.extra = Path(run_dir), extra or {}
        self.progress = progress or (lambda history, message: None)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        self.history = History(learning_rate=config.learning_rate)
        self.rng = np.random.default_rng(config.seed)
        torch.manual_seed(config.seed)
        self._resume()
        # What the card reports: the rate the run started at, whatever this call asked.
        self.config = replace(config, learning_rate=self.history.learning_rate,
                              resume_learning_rate=None)

    def _resume(self) -> None:
        """From last.pt; else from best.pt alone (see `resumable`)."""
        path = resumable(self.run_dir)
        if path is None:
            return
        state = torch.load(path, weights_only=True, map_location="cpu")
        try:
            self.model.load_state_dict(state["state_dict"])
        except RuntimeError as error:  # another network's weights: sizes or names differ
            from mtools.errors import UsageError

            raise UsageError(f"{self.run_dir} holds a run of a different network than this "
                             f"config builds ({str(error).splitlines()[0]})",
                             hint="pass --fresh to start over, or --run-dir DIR") from error
        if "data" in self.extra and "data" in state and sorted(state["data"]) != \
                sorted(self.extra["data"]):
            from mtools.errors import UsageError

            raise UsageError(f"{self.run_dir} holds a run on {' '.join(state['data'])}, not on "
                             f"{' '.join(self.extra['data'])}",
                             hint="pass --fresh to start over, or --run-dir DIR for a new run")
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])  # state moves to the weights' device
        self.history = History(**state["history"])
        if self.history.learning_rate is None:  # a checkpoint from before the field
            self.history.learning_rate = state["train_config"]["learning_rate"]
        if "optimizer" not in state:  # a fresh optimizer goes on at the rate last set
            for group in self.optimizer.param_groups:
                group["lr"] = self._last_set_rate()
        self.rng = np.random.default_rng([self.config.seed, self.history.step])
        self.progress(self.history, f"resumed at step {self.history.step}"
                                    + ("" if "optimizer" in state else f" from {path.name}"))
        if self.history.step < self.config.max_steps:  # not for an export: nothing will train
            self._set_learning_rate(self.config.resume_learning_rate)

    def _set_learning_rate(self, rate: float | None) -> None:
        """Continue a resumed run at `rate` (None: as it was), recorded in the
        history so the card can say where the schedule was changed by hand.
        A rate the run was last set to is no change: resuming again with the
        same option keeps the plateau decay since then."""
        if rate is None or math.isclose(rate, self._last_set_rate(), rel_tol=1e-9):
            return
        current = self.optimizer.param_groups[0]["lr"]
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        self.history.learning_rate_changes.append({"step": self.history.step,
                                                   "learning_rate": rate, "was": current})
        self.progress(self.history, f"learning rate {current:g} -> {rate:g} from step "
                                    f"{self.history.step}")

    def _last_set_rate(self) -> float:
        """The rate the run started at, or the last one --learning-rate set."""
        changes = self.history.learning_rate_changes
        return changes[-1]["learning_rate"] if changes else self.history.learning_rate

    def run(self) -> History:
        """Train until early stopping or a limit; returns the history. Ctrl-C
        (or SIGTERM) saves last.pt first, so the run resumes from the step
        it reached."""
        config, history = self.config, self.history
        first_step = history.step
        self.model.train()  # whatever the caller did with it (a parity check leaves eval mode)
        if self.validate_first and not history.log:  # a warm start: its weights are a candidate
            self._validate(float("nan"))
        try:
            with _term_as_interrupt():
                loss = self._steps()
        except KeyboardInterrupt:
            if history.step > first_step:
                self._save("last.pt")
            raise
        if history.evals_without_gain >= config.patience:
            history.stopped = "early stop"
        elif history.step >= config.max_steps and history.step > first_step:
            history.stopped = "max steps"  # (an --export-only call trains nothing: keeps the reason)
        validated = history.log[-1]["step"] if history.log else 0
        if history.step > validated:  # stopped between validations: measure the last weights
            self._validate(loss.item())
        self._save("last.pt")
        return history

    def _steps(self) -> torch.Tensor:
        """The training steps, up to a limit or early stopping; the last loss."""
        config, history = self.config, self.history
        started, last_save = time.monotonic() - history.seconds, time.monotonic()
        loss = torch.tensor(float("nan"))
        while history.step < config.max_steps and history.evals_without_gain < config.patience:
            if (time.monotonic() - started) / 60 > config.max_minutes:
                history.stopped = "max minutes"
                break
            if hasattr(self.loss_fn, "start_step"):
                self.loss_fn.start_step(history.step)
            loss, _ = self.loss_fn(self.model, to_device(self.train_data.batch(self.rng),
                                                         self.device))
            self.optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), config.clip_norm)
            self.optimizer.step()
            history.step += 1
            history.stopped = INTERRUPTED  # until a limit or early stopping ends the run
            history.seconds = time.monotonic() - started
            if history.step % config.eval_every == 0:
                self._validate(loss.item())
                last_save = time.monotonic()
            elif time.monotonic() - last_save > config.checkpoint_every_s:
                self._save("last.pt")
                last_save = time.monotonic()
        return loss

    def _validate(self, train_loss: float) -> None:
        history = self.history
        valid = evaluate(self.model, self.valid_batches, self.loss_fn)
        history.log.append({"step": history.step,
                            "train": None if math.isnan(train_loss) else round(train_loss, 4),
                            "valid": round(valid, 4), "seconds": round(history.seconds)})
        if valid < history.best_valid - 1e-4:
            history.best_valid, history.best_step, history.evals_without_gain = valid, history.step, 0
            self._save("best.pt")
        else:
            history.evals_without_gain += 1
            if history.evals_without_gain % 2 == 0:  # plateau: lower the learning rate
                for group in self.optimizer.param_groups:
                    group["lr"] *= self.config.lr_decay
        self._save("last.pt")
        self.progress(history, f"step {history.step}: train {train_loss:.3f} valid {valid:.3f} "
                               f"(best {history.best_valid:.3f} at {history.best_step})")

    def _save(self, name: str) -> None:
        """Write a checkpoint atomically (temp file + rename), on the CPU;
        best.pt without the optimizer's state (export needs the weights)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = {"kind": self.kind, "config": dict(self.model.config),
                 "state_dict": to_device(self.model.state_dict(), torch.device("cpu")),
                 "history": asdict(self.history), "train_config": asdict(self.config),
                 **self.extra}
        if name != "best.pt":
            state["optimizer"] = to_device(self.optimizer.state_dict(), torch.device("cpu"))
        save_checkpoint(state, self.run_dir / name)


@contextlib.contextmanager
def _term_as_interrupt():
    """SIGTERM (a batch system's stop, `timeout`) raises KeyboardInterrupt
    while training, as Ctrl-C does, so the run saves before it ends (in the
    main thread only: signal handlers can be set nowhere else)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def save_checkpoint(state: dict, path: Path) -> None:
    """torch.save, atomically: a temp file beside `path`, then rename."""
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def resumable(run_dir: Path) -> Path | None:
    """The checkpoint a run folder resumes from: last.pt, else best.pt alone
    (a run brought back from another machine without its optimizer's
    state: the weights and history of the best validation, a fresh
    optimizer); None for a new run."""
    for name in ("last.pt", "best.pt"):
        if (Path(run_dir) / name).exists():
            return Path(run_dir) / name
    return None


def to_device(data, device: torch.device):
    """Tensors in (nested tuples, lists and dicts of) `data` moved to `device`."""
    if isinstance(data, torch.Tensor):
        return data.to(device)
    if isinstance(data, dict):
        return {key: to_device(value, device) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(to_device(value, device) for value in data)
    return data


def load_best(run_dir: Path) -> tuple[nn.Module, TrainConfig]:
    """The best checkpoint of a run, to export, and the loop settings it
    was trained with (not an --export-only call's limits). MtoolsError
    when the run holds none."""
    from mtools.errors import MtoolsError

    if not (Path(run_dir) / "best.pt").exists():
        raise MtoolsError(f"{run_dir} holds no trained checkpoint to export",
                          hint="train some steps first (drop --export-only)")
    model, state = load_checkpoint(Path(run_dir) / "best.pt")
    return model, TrainConfig(**state["train_config"])


def load_checkpoint(path: Path) -> tuple[nn.Module, dict]:
    """The module saved in a checkpoint (eval mode) and the checkpoint data."""
    state = torch.load(path, weights_only=True, map_location="cpu")
    model = build_module(state["kind"], state["config"])
    model.load_state_dict(state["state_dict"])
    return model.eval(), state


def data_names(sources) -> list[str]:
    """The data sources of a run as its checkpoints record them (a run
    resumed on other data is refused): corpus names as they are, paths
    normalised ("mel/" and "./mel" are one)."""
    return [source if ":" in source or not os.path.exists(source) else os.path.normpath(source)
            for source in map(str, sources)]
