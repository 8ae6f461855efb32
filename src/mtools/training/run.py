"""`mtools train` as a library call: data → training (resumable) → ONNX
export with a parity check → validation figures and the n-gram baseline →
model card. Needs the `train` extra (torch)."""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from mtools.errors import InputFormatError
from mtools.models.registry import model_stem, write_card
from mtools.training import corpora
from mtools.training.evaluate import ngram_baseline, score_examples
from mtools.training.export import architecture, card_hyperparameters, export_checked, \
    export_event_rnn, graph_names, parity_error, run_card, whole_export
from mtools.training.loop import CropSampler, TrainConfig, Trainer, data_names, load_best, \
    loop_words
from mtools.training.nets import MODULES
from mtools.training.tasks import DEFAULT_CONFIGS, ModelSpec, load_examples
from mtools.training.warm_start import warm_start

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainRequest:
    """spec: what to train; sources: corpus names or paths; out_dir: where
    the .onnx and card go; run_dir: checkpoints (resumed when present);
    config: loop settings; network: overrides of the spec's network size;
    fresh: discard run_dir's checkpoints first; init_from: an export of
    this network (float or int8) to start a new run from, init_spec: how
    the user named it."""

    spec: ModelSpec
    sources: tuple[str, ...]
    out_dir: Path
    run_dir: Path
    config: TrainConfig = TrainConfig()
    network: dict | None = None
    fresh: bool = False
    init_from: Path | None = None
    init_spec: str | None = None


def default_run_dir(spec: ModelSpec) -> Path:
    return corpora.cache_dir() / "runs" / model_stem(spec.family, spec.config)


def train_model(request: TrainRequest, progress: Progress = lambda message: None) -> Path:
    """Train (or resume), export and write the card; returns the .onnx path."""
    spec = request.spec
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if request.fresh and request.run_dir.exists():
        shutil.rmtree(request.run_dir)
    report = lambda done, total, what: progress(f"parsing {what} ({done}/{total})")  # noqa: E731
    train = load_examples(spec, request.sources, "train", report)
    valid = load_examples(spec, request.sources, "valid", report)
    if not train or not valid:
        raise InputFormatError(f"{spec.spec}: the data gave {len(train)} training and {len(valid)} "
                               "validation pieces; both must be non-empty",
                               hint="a split needs pieces in both parts: give more data")
    progress(f"{len(train)} training and {len(valid)} validation pieces")
    network = {**spec.network, **(request.network or {})}
    control = train[0].control.shape[1] if train[0].control is not None else 0
    model = MODULES[spec.module](spec.encoding.input_size + control, spec.encoding.num_classes,
                                 **network)
    init = warm_start(request.run_dir, model, request.init_from, request.init_spec, parity_error,
                      progress)
    if init is not None and request.init_spec is None:  # resumed: the run still started there
        request = replace(request, init_spec=init.get("spec") or init["file"])
    trainer = Trainer(model, model.kind, CropSampler(train, spec.encoding, request.config,
                                                     spec.augment),
                      CropSampler(valid, spec.encoding, request.config), request.config,
                      request.run_dir,
                      extra={"spec": spec.spec, "data": data_names(request.sources)},
                      progress=lambda history, message: progress(message),
                      validate_first=init is not None)
    history = trainer.run()
    request = replace(request, config=trainer.config)  # the rate the run started at
    best, trained_with = load_best(request.run_dir)
    return export_and_card(replace(request, config=trained_with), best, history, train, valid,
                           progress, init)


def export_and_card(request: TrainRequest, model, history, train, valid,
                    progress: Progress, init: dict | None = None) -> Path:
    """Export `model`, check parity, measure, and write the card."""
    from mtools.models.registry import resolve_model
    from mtools.models.sequence import EventRnn

    spec = request.spec
    request.out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = request.out_dir / f"{model_stem(spec.family, spec.config)}.onnx"
    with whole_export(onnx_path):
        error = export_checked(model, onnx_path, export_event_rnn, parity_error)
        card = _card(request, model, history, train, valid, parity=error)
        if init is not None:
            card["training"]["initialised_from"] = init
        if spec.card_data is not None:
            card["encoding"].update(spec.card_data(request.sources))
        write_card(card, onnx_path)  # provisional, so the model can be loaded and measured
        progress("measuring the exported model on the validation split")
        rnn = EventRnn.from_ref(resolve_model(str(onnx_path)), device="cpu")
        card["metrics"] = {**score_examples(rnn, valid), **ngram_baseline(spec, train, valid),
                           "parity_max_abs_error": float(f"{error:.2e}"), "split": "valid",
                           "measured_by": "mtools train (at export); reproduce: mtools eval --model "
                                          f"{spec.spec} {' '.join(request.sources)} --split valid"}
        write_card(card, onnx_path)
    progress(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB): {card['metrics']}")
    return onnx_path


def _card(request: TrainRequest, model, history, train, valid, *, parity: float) -> dict:
    spec = request.spec
    return {
        "name": spec.family, "config": spec.config, "task": "continue",
        "default": spec.config == DEFAULT_CONFIGS.get(spec.family, spec.config),
        "description": spec.description,
        "inputs": graph_names(model)[0],
        "outputs": graph_names(model)[1],
        "hyperparameters": {**card_hyperparameters(model), "architecture": architecture(model)},
        "encoding": dict(spec.card_encoding),
        "training": {
            "datasets": list(request.sources),
            "split": f"by piece: {corpora.VALID_PERCENT}% of piece ids (sha1) are validation; "
                     "Groove MIDI keeps its own split",
            "train_pieces": len(train), "valid_pieces": len(valid),
            "train_events": int(sum(len(e.ids) for e in train)),
            "best_valid_loss_per_class": round(history.best_valid, 4),
            **run_card(history, request.config, reproduce_command(request, model.config)),
        },
        "metrics": {},
    }


def with_limits(config: TrainConfig, **limits) -> TrainConfig:
    """config with the given fields replaced where not None."""
    return replace(config, **{k: v for k, v in limits.items() if v is not None})


def reproduce_command(request: TrainRequest, network: dict) -> str:
    """The `mtools train` command that trains this model again (it resumes
    a stopped run from its checkpoints)."""
    spec, config = request.spec, request.config
    words = ["mtools", "train", spec.family, "--config", spec.config]
    for source in request.sources:
        words += ["--data", source]
    for key in ("hidden", "layers", "dropout"):
        if network.get(key) != spec.network.get(key):
            words += [f"--{key}", f"{network[key]:g}"]
    words += ["--max-minutes", f"{config.max_minutes:g}", "--out", "DIR"]
    words += loop_words(config, TrainConfig())
    if request.init_from is not None or request.init_spec is not None:
        words += ["--init-from", request.init_spec or request.init_from.name]
    return " ".join(shlex.quote(word) for word in words)
