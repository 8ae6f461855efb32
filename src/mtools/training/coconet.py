"""Training Coconet: random crops of chorales, transposed at random within
the pitch range, with orderless-NADE masks (each example masks a uniformly
drawn share of its (step, voice) cells); the loss is the cross-entropy of
the masked cells, averaged per example so every mask size weighs the same.
Export writes a graph with dynamic batch and time axes and checks it against
torch; the card holds the frame-wise NLL measured on the valid split."""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mtools.errors import InputFormatError, MtoolsError
from mtools.models.coconet import GRAPH_INPUTS, GRAPH_OUTPUTS, REST, ChoraleSpace
from mtools.models.registry import write_card
from mtools.training import corpora
from mtools.training.chorales import load_chorales
from mtools.training.export import architecture, export_checked, export_onnx, run_card, \
    whole_export
from mtools.training.loop import TrainConfig, Trainer, data_names, load_best, loop_words
from mtools.training.nets import CoconetNet
from mtools.training.warm_start import card_beside, warm_start_folded

SPACE = ChoraleSpace()
DEFAULT_SOURCES = ("jsb",)
NETWORK = {"filters": 48, "layers": 24, "dilations": [1, 2, 4, 8],
           "pitch_dilations": [2, 4, 8, 16]}
LOOP = TrainConfig(batch_size=16, crop_steps=64, eval_every=200, valid_crops=256, patience=8)
EVAL_SAMPLES = 32  # Monte Carlo draws per valid chorale for the frame-wise NLL
CALIBRATION_CROPS = 256  # training crops that measure a warm start's batch norms again
Progress = Callable[[str], None]


class ChoraleCrops:
    """Batches for `Trainer`: (pianoroll, mask, targets, cells) tensors of
    crops of `crop_steps` steps; `transpose` draws a shift per crop that
    keeps every pitch in range."""

    def __init__(self, chorales: list[np.ndarray], config: TrainConfig, space: ChoraleSpace = SPACE,
                 transpose: bool = True):
        self.chorales = [c for c in chorales if len(c) > 0]
        self.config, self.space, self.transpose = config, space, transpose
        lengths = np.array([len(c) for c in self.chorales], dtype=np.float64)
        self.weights = lengths / lengths.sum()

    def _crop(self, rng: np.random.Generator, transpose: bool) -> np.ndarray:
        chorale = self.chorales[rng.choice(len(self.chorales), p=self.weights)]
        steps = self.config.crop_steps
        start = int(rng.integers(max(1, len(chorale) - steps + 1)))
        crop = np.full((steps, chorale.shape[1]), REST, np.int16)
        piece = chorale[start:start + steps]
        crop[:len(piece)] = piece
        if transpose:
            sounding = crop[crop != REST]
            if len(sounding):
                low = max(self.space.min_pitch - int(sounding.min()), -6)
                high = min(self.space.max_pitch - int(sounding.max()), 6)
                shift = int(rng.integers(low, high + 1)) if low <= high else 0
                crop = np.where(crop == REST, REST, crop + shift).astype(np.int16)
        return crop

    def _batch(self, rng: np.random.Generator, count: int, transpose: bool):
        crops = np.stack([self._crop(rng, transpose) for _ in range(count)])
        shares = rng.random(count)
        cells = rng.random(crops.shape) < shares[:, None, None]
        flat = cells.reshape(count, -1)
        for row in np.nonzero(~flat.any(axis=1))[0]:  # at least one cell to predict
            flat[row, rng.integers(flat.shape[1])] = True
        return make_batch(crops, flat.reshape(crops.shape), self.space)

    def batch(self, rng: np.random.Generator):
        return self._batch(rng, self.config.batch_size, self.transpose)

    def fixed_batches(self, count: int, seed: int = 1234):
        rng = np.random.default_rng(seed)
        size = self.config.batch_size
        return [self._batch(rng, min(size, count - i), False) for i in range(0, count, size)]


def make_batch(chorales: np.ndarray, cells: np.ndarray, space: ChoraleSpace = SPACE):
    """Tensors for `coconet_loss`: pianoroll with the masked cells blanked,
    the mask spread over pitch, target pitch indices (-1 = rest: not scored)
    and the boolean cells to score."""
    roll, mask = space.network_inputs(chorales, cells)
    targets = np.where(chorales == REST, -1, chorales.astype(np.int64) - space.min_pitch)
    return (torch.from_numpy(roll), torch.from_numpy(mask),
            torch.from_numpy(targets), torch.from_numpy(cells & (chorales != REST)))


def coconet_loss(model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over examples of each example's mean NLL per masked note."""
    roll, mask, targets, cells = batch
    logp = torch.log_softmax(model(roll, mask), dim=2)  # (batch, time, pitch, voices)
    picked = logp.gather(2, targets.clamp(min=0)[:, :, None, :]).squeeze(2)
    weights = cells.float()
    per_example = -(picked * weights).sum(dim=(1, 2)) / weights.sum(dim=(1, 2)).clamp(min=1)
    scored = (weights.sum(dim=(1, 2)) > 0).float()
    count = scored.sum()
    return (per_example * scored).sum() / count.clamp(min=1), count


@dataclass(frozen=True)
class CoconetRequest:
    sources: tuple[str, ...]
    out_dir: Path
    run_dir: Path
    config: TrainConfig = LOOP
    network: dict | None = None
    fresh: bool = False
    init_from: Path | None = None  # an export to start a new run from (see warm_start)
    init_spec: str | None = None


def default_run_dir() -> Path:
    return corpora.cache_dir() / "runs" / "coconet"


def train_coconet(request: CoconetRequest, progress: Progress = lambda message: None) -> Path:
    """Train (or resume), export, measure on valid and write the card."""
    if request.fresh and request.run_dir.exists():
        shutil.rmtree(request.run_dir)
    train, valid = chorale_splits(request.sources)
    progress(f"{len(train)} training and {len(valid)} validation chorales")
    model = CoconetNet(SPACE.pitches, len(SPACE.voices),
                       **{**run_network(request.run_dir), **(request.network or {})})
    init = warm_start_folded(request.run_dir, model, request.init_from, request.init_spec,
                             parity_error, progress, lambda: [batch[:2] for batch in ChoraleCrops(
                                 train, request.config).fixed_batches(CALIBRATION_CROPS)],
                             other_donor(model, request.init_from), deepen)
    if init is not None and request.init_spec is None:  # resumed: the run still started there
        request = replace(request, init_spec=init.get("spec") or init["file"])
    trainer = Trainer(model, model.kind, ChoraleCrops(train, request.config),
                      ChoraleCrops(valid, request.config, transpose=False), request.config,
                      request.run_dir,
                      extra={"spec": "coconet", "data": data_names(request.sources)},
                      progress=lambda history, message: progress(message), loss_fn=coconet_loss,
                      validate_first=init is not None)
    history = trainer.run()
    request = replace(request, config=trainer.config)  # the rate the run started at
    best, trained_with = load_best(request.run_dir)
    return export_coconet(replace(request, config=trained_with), best, history, train, valid,
                          progress, init)


def chorale_splits(sources) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The training and validation chorales of `sources`; MtoolsError when
    either is empty."""
    train = [c for s in sources for c in load_chorales(s, "train")]
    valid = [c for s in sources for c in load_chorales(s, "valid")]
    if not train or not valid:
        raise InputFormatError(f"coconet: the data gave {len(train)} training and {len(valid)} "
                               "validation chorales; both must be non-empty",
                               hint="a split needs pieces in both parts: give more data")
    return train, valid


def valid_figures(path: Path, valid: list[np.ndarray]) -> dict:
    """The card's frame-wise figures of the export at `path` on `valid`."""
    from mtools.models.coconet import Coconet, framewise_figures
    from mtools.models.registry import resolve_model

    net = Coconet.from_ref(resolve_model(str(path)), device="cpu")
    return framewise_figures(net, valid, EVAL_SAMPLES)


def run_network(run_dir: Path) -> dict:
    """The network a run folder holds (its checkpoint's, so a run begun
    before NETWORK changed resumes as it was), else NETWORK."""
    from mtools.training.loop import resumable

    checkpoint = resumable(run_dir)
    if checkpoint is None:
        return dict(NETWORK)
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True).get("config", {})
    return {key: saved[key] for key in ("filters", "layers", "dilations", "pitch_dilations")
            if key in saved} | ({} if "pitch_dilations" in saved else {"pitch_dilations": []})


def other_donor(model: CoconetNet, init_from: Path | None) -> CoconetNet | None:
    """The network of the `--init-from` export (from its card) when it is
    not built as `model` is, to be deepened into it (`deepen`); None when
    there is no export or it is `model`'s network (it loads as it is)."""
    if init_from is None:
        return None
    theirs = card_beside(init_from).get("hyperparameters", {})
    if "layers" not in theirs:
        return None
    config = {key: theirs.get(key, model.config[key])
              for key in ("pitches", "voices", "filters", "layers", "dilations")}
    donor = CoconetNet(**config, pitch_dilations=theirs.get("pitch_dilations", []))
    same = all(donor.config[key] == model.config[key] for key in ("pitches", "voices", "filters"))
    return None if same and donor.block_dilations() == model.block_dilations() else donor


@torch.no_grad()
def deepen(deep: CoconetNet, shallow: CoconetNet) -> dict:
    """Load `shallow`'s weights into `deep`, whose first residual blocks
    are dilated as `shallow`'s are; each further block starts as the
    identity: its second convolution is all zeros, so the batch norm after
    it (calibrated on what it sees, `calibrate_folded_norms`) gives zeros
    and the block returns relu(x + 0) = x (x ≥ 0, a ReLU's output). Its
    first convolution starts at random, so gradients reach the second; the
    batch norm's weight starts at √eps, so a new block's share grows as
    training raises it. Returns what a card says of it; MtoolsError when
    `deep` does not extend `shallow` that way."""
    a, b = shallow.config, deep.config
    for key in ("pitches", "voices", "filters"):
        if a[key] != b[key]:
            raise MtoolsError(f"the --init-from network has {a[key]} {key}, this one {b[key]}: "
                              "a run can start from a network with fewer blocks, not another size")
    old, new = shallow.block_dilations(), deep.block_dilations()
    if len(old) >= len(new):
        raise MtoolsError(f"the --init-from network has {len(old)} residual blocks, this one "
                          f"{len(new)} built otherwise: a run can start only from the same network "
                          "or one with fewer blocks")
    if new[:len(old)] != old:
        raise MtoolsError(f"the --init-from network's blocks are {old} (kind, dilation), "
                          f"this one's first ones {new[:len(old)]}: it cannot be extended into "
                          "this one")
    state = {**deep.state_dict(), **shallow.state_dict()}  # same names for the shared modules
    for index in range(len(old), len(new)):
        state[f"blocks.{index}.2.weight"] = torch.zeros_like(state[f"blocks.{index}.2.weight"])
        state[f"blocks.{index}.2.bias"] = torch.zeros_like(state[f"blocks.{index}.2.bias"])
    deep.load_state_dict(state)
    return {"deepened": f"{len(new) - len(old)} residual blocks added after the network's "
                        f"{len(old)}, each starting as the identity (second convolution zero)",
            "from_network": {key: a[key] for key in ("layers", "dilations", "pitch_dilations")}}


def export_graph(model: CoconetNet, path: Path) -> None:
    """The network as one ONNX file, dynamic batch and time axes, atomically."""
    example = (torch.zeros(2, 8, SPACE.pitches, len(SPACE.voices)),) * 2
    dynamic = {name: {0: "batch", 1: "time"} for name in (*GRAPH_INPUTS, *GRAPH_OUTPUTS)}
    export_onnx(model.eval(), example, Path(path), list(GRAPH_INPUTS), list(GRAPH_OUTPUTS), dynamic)


def parity_error(model: CoconetNet, path: Path, seed: int = 0) -> float:
    """Largest |torch - ONNX Runtime| on logits for random chorales and masks
    of a length the export did not see."""
    from mtools.runtime import load_session

    rng = np.random.default_rng(seed)
    chorales = rng.integers(SPACE.min_pitch, SPACE.max_pitch + 1, size=(3, 37, 4)).astype(np.int16)
    roll, mask, _, _ = make_batch(chorales, rng.random((3, 37, 4)) < 0.5)
    with torch.no_grad():
        want = model.eval()(roll, mask).numpy()
    session = load_session(path, inputs=list(GRAPH_INPUTS), outputs=list(GRAPH_OUTPUTS),
                           device="cpu")
    got = session.run({"pianoroll": roll.numpy(), "mask": mask.numpy()})["logits"]
    return float(np.abs(got - want).max())


def export_coconet(request: CoconetRequest, model: CoconetNet, history, train, valid,
                   progress: Progress, init: dict | None = None) -> Path:
    request.out_dir.mkdir(parents=True, exist_ok=True)
    path = request.out_dir / "coconet.onnx"
    with whole_export(path):
        error = export_checked(model, path, export_graph, parity_error)
        card = _card(request, model, history, train, valid)
        if init is not None:
            card["training"]["initialised_from"] = init
        write_card(card, path)
        progress("measuring the frame-wise NLL on the validation chorales")
        card["metrics"] = {**valid_figures(path, valid), "split": "valid",
                           "parity_max_abs_error": float(f"{error:.2e}"),
                           "protocol": FRAMEWISE_PROTOCOL,
                           "measured_by": "mtools train (at export); reproduce: mtools eval --model "
                                          f"coconet {' '.join(request.sources)} --split valid"}
        write_card(card, path)
    progress(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {card['metrics']}")
    return path


def quantize_coconet(path: Path, card: dict, data: list[str] | None = None) -> dict:
    """Rewrite the Coconet export at `path` (its card read as `card`) with
    int8 weights and activations (`quantize.quantize_static_file`),
    calibrated on CALIBRATION_CROPS training crops with random masks; the
    frame-wise figures are measured again on the valid split, the float
    file's beside them under metrics.float32. Returns the new metrics."""
    from mtools.training.quantize import STATIC_METHOD, card_data, measured_again, \
        quantize_static_file, replace_model, rewrite_note

    sources = card_data(path, card, data)
    train, valid = chorale_splits(sources)
    before = valid_figures(path, valid)  # now, as the int8 figures will be
    feeds = [{"pianoroll": roll.numpy(), "mask": mask.numpy()} for roll, mask, *_ in
             ChoraleCrops(train, LOOP).fixed_batches(CALIBRATION_CROPS)]

    def describe(temporary: Path) -> None:
        card["metrics"] = measured_again(
            card["metrics"], before, valid_figures(temporary, valid),
            "python -m mtools.training.quantize (int8 and float32 figures, same data)")
        card["quantization"] = {
            **rewrite_note(path, STATIC_METHOD, "quantize", sources),
            "calibration": f"{CALIBRATION_CROPS} training crops of {LOOP.crop_steps} steps, "
                           "each masking a random share of its cells, as in training"}

    replace_model(path, card, lambda temporary: quantize_static_file(path, temporary, feeds),
                  describe, tag="int8")
    return card["metrics"]


FRAMEWISE_PROTOCOL = (
    "16th-note grid, whole valid pieces (no crops), untransposed. Frames in a random order, "
    "voices within a frame in a random order; a frame's cost is the sum over its sounding "
    "voices of -log p(true pitch) given the frames before it in the order and the frame's "
    "voices before it (ground truth), in nats. Monte Carlo: per piece, draws of a uniform "
    "position in the order; frame_nll is the mean cost per frame, note_nll per voice cell.")


# The paper's own likelihoods, for the card to set ours beside (read from the
# ICLR 2017 submission's Table 1; the ISMIR 2017 version, arXiv 1903.07227,
# has a different table that was not available here to read).
PUBLISHED = {
    "source": "Huang, Cooijmans, Roberts, Courville, Eck, \"Counterpoint by Convolution\", "
              "ICLR 2017 submission (OpenReview), Table 1, row \"COCONET, importance sampling\"",
    "notewise_nll": 0.569,
    "framewise_nll": 3.73,
    "network": "128 channels, 64 layers",
    "data": "their own 60/20/20 split of 354 music21 chorales (not the JSB split used here), "
            "16th-note grid, pieces cropped to T steps; called preliminary validation "
            "likelihoods in the caption",
    "comparable": "not directly: different data, split, crops, network and training (ours: "
                  "JSB train plus JS Fakes). notewise_nll is the closest analogue of "
                  "metrics.note_nll (ground truth context, per voice cell; theirs orders single "
                  "cells at random, ours whole frames). For framewise_nll the paper lets the "
                  "model 'run free within each frame', where metrics.frame_nll gives each voice "
                  "the true pitches of the frame's voices before it: not comparable",
}


def _card(request: CoconetRequest, model: CoconetNet, history, train, valid) -> dict:
    return {
        "name": "coconet", "config": "", "task": "harmonize", "other_tasks": ["infill"],
        "default": True,
        "description": "four-voice chorale harmonization and infilling (Coconet, blocked Gibbs)",
        "inputs": list(GRAPH_INPUTS), "outputs": list(GRAPH_OUTPUTS),
        "hyperparameters": {**model.config, "architecture": architecture(model)},
        "encoding": {**SPACE.to_card(), "rest": "a rest is an all-zero pitch column"},
        "training": {
            "datasets": list(request.sources),
            "split": "JSB chorales: Boulanger-Lewandowski's train part for training, its valid "
                     "part for selection and the figures; the test part is not used. JS Fakes "
                     "(when listed) count as training data only",
            "train_pieces": len(train), "valid_pieces": len(valid),
            "best_valid_loss_per_note": round(history.best_valid, 4),
            **run_card(history, request.config, reproduce_command(request)),
        },
        "metrics": {},
        "published": PUBLISHED,
    }


def reproduce_command(request: CoconetRequest) -> str:
    words = ["mtools", "train", "coconet"]
    for source in request.sources:
        words += ["--data", source]
    for key, option in (("filters", "--hidden"), ("layers", "--layers")):
        value = (request.network or {}).get(key)
        if value is not None and value != NETWORK[key]:
            words += [option, str(value)]
    if request.init_from is not None or request.init_spec is not None:
        words += ["--init-from", request.init_spec or request.init_from.name]
    words += ["--max-minutes", f"{request.config.max_minutes:g}", "--out", "DIR"]
    words += loop_words(request.config, LOOP)
    return " ".join(shlex.quote(word) for word in words)
