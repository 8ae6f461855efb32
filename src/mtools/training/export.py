"""Export trained event RNNs to ONNX with the graph names the runtime
checks, and prove the export computes what torch computes.

The exported graph takes a whole time axis (so a primer is one call and
each generated step another) and explicit LSTM state, see
`mtools.models.sequence`. Weights are stored inside the one .onnx file.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mtools.models.sequence import BATCH, PUSH_SUFFIX, state_shapes
from mtools.training.ring import ring_file

OPSET = 17
PARITY_TOLERANCE = 1e-4  # max |torch - onnx| on logits, float32


def graph_names(model: nn.Module, *, shifted: bool = False) -> tuple[list[str], list[str]]:
    """The ONNX input and output names of an exported event network: a
    ring state outputs the step it pushes (see mtools.training.ring), or,
    with `shifted`, the whole new state as torch computes it."""
    states = list(model.STATE_NAMES)
    ring = () if shifted else ring_states(model)
    return ["inputs", *states], ["logits", *(f"{name}{PUSH_SUFFIX if name in ring else '_out'}"
                                             for name in states)]


def ring_states(model: nn.Module) -> tuple[str, ...]:
    return tuple(getattr(model, "RING_STATES", ()))


def architecture(model: nn.Module) -> str:
    """The card's `architecture`: the first sentence of the network's
    docstring, on one line (an "et al." does not end it)."""
    return " ".join(re.split(r"(?<!et al)\.\s", model.__doc__.strip())[0].split())


def card_hyperparameters(model: nn.Module) -> dict:
    """The card's `hyperparameters`: the network config, its state shapes,
    whether the graph takes one step per call and its ring states, if any
    (see models.sequence)."""
    ring = {"ring_states": list(ring_states(model))} if ring_states(model) else {}
    return {**model.config, "state_shapes": state_shapes(model.config, model.STATE_NAMES),
            "step_only": model.step_only, **ring}


def export_event_rnn(model: nn.Module, path: Path) -> None:
    """Write `model` (EventLSTM or AttentionLSTM, eval mode) as a single-file
    ONNX graph with a dynamic batch axis (and time axis, unless the model is
    step_only), its ring states as rings (mtools.training.ring), atomically."""
    model = model.eval()
    inputs_names, output_names = graph_names(model, shifted=True)
    time = 1 if model.step_only else 3
    example = (torch.zeros(2, time, model.config["input_size"]), *model.zero_state(2))
    shapes = state_shapes(model.config, model.STATE_NAMES)
    dynamic = {"inputs": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"}}
    if model.step_only:
        dynamic = {"inputs": {0: "batch"}, "logits": {0: "batch"}}
    for name, shape in shapes.items():
        dynamic[name] = dynamic[f"{name}_out"] = {shape.index(BATCH): "batch"}
    # The tracer's notes on LSTM shape checks do not apply: the state is an
    # explicit input, so any batch and time run correctly (tested).
    export_onnx(model, example, Path(path), inputs_names, output_names, dynamic,
                rewrite=(lambda file: ring_file(file, file, ring_states(model)))
                if ring_states(model) else None)


def export_onnx(model: nn.Module, example: tuple, path: Path, inputs: list[str],
                outputs: list[str], dynamic: dict, rewrite=None) -> None:
    """torch.onnx.export into a temporary file, rewritten in place by
    `rewrite(file)` when given, renamed to `path` when it is whole, with the
    tracer's warnings silenced (each caller's tests check its graph)."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example, str(temporary), input_names=inputs,
                              output_names=outputs, dynamic_axes=dynamic,
                              opset_version=OPSET, dynamo=False)
        if rewrite is not None:
            rewrite(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def parity_error(model: nn.Module, path: Path, *, seed: int = 0) -> float:
    """Largest |torch - ONNX Runtime| over logits and states for random
    inputs of batch 3 (40 steps, or 1 for a step_only graph), starting from
    a random state."""
    from mtools.runtime import load_session

    rng = np.random.default_rng(seed)
    time = 1 if model.step_only else 40
    inputs = rng.normal(size=(3, time, model.config["input_size"])).astype(np.float32)
    state = [rng.normal(size=tuple(t.shape)).astype(np.float32) * 0.5
             for t in model.zero_state(3)]
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(inputs), *(torch.from_numpy(s) for s in state))
    names_in, names_out = graph_names(model)
    if not set(names_out) <= graph_outputs(path):  # an export from before rings
        names_out = graph_names(model, shifted=True)[1]
    session = load_session(path, inputs=names_in, outputs=names_out, device="cpu")
    got = session.run(dict(zip(names_in, [inputs, *state])))
    # a ring state's output is the step torch's shifted state ends with
    return max(float(np.abs(got[name] - (want[:, -1:] if name.endswith(PUSH_SUFFIX) else want)
                            .numpy()).max())
               for name, want in zip(names_out, expected))


def graph_outputs(path: Path) -> set[str]:
    """The output names of the ONNX graph at `path`."""
    import onnx

    return {value.name for value in onnx.load(str(path), load_external_data=False).graph.output}


def export_checked(model: nn.Module, path: Path, export, parity) -> float:
    """`export(model, path)`, then `parity(model, path)` (the largest
    |torch - ONNX Runtime|) must be within PARITY_TOLERANCE, else
    MtoolsError; returns the parity error for the card."""
    from mtools.errors import MtoolsError

    export(model, path)
    error = parity(model, path)
    if error > PARITY_TOLERANCE:
        raise MtoolsError(f"ONNX export differs from torch by {error:.2e} (> {PARITY_TOLERANCE})")
    return error


def run_card(history, loop, command: str) -> dict:
    """The card's `training` fields every trainer shares: how long it
    trained, where the best validation was, the loop settings, the last
    validations, why it stopped, the command that reproduces it, learning rates set by hand
    on resuming (`--learning-rate`) and torch's version."""
    settings = {k: v for k, v in asdict(loop).items() if k != "resume_learning_rate"}
    card = {"steps": history.step, "best_step": history.best_step,
            "seconds": round(history.seconds), "loop": settings, "log": history.log[-20:],
            "command": command, "torch": torch.__version__}
    if history.stopped:  # early stop, or a limit (a checkpoint from before the field: unknown)
        card["stopped"] = history.stopped
    if history.learning_rate_changes:
        card["learning_rate_changes"] = list(history.learning_rate_changes)
    return card


@contextlib.contextmanager
def whole_export(path: Path):
    """Export, card and measure a model at `path` (the .onnx; its card
    beside it) all or nothing: when the block fails or is interrupted
    (Ctrl-C while measuring), its new files go and an export that was
    there before comes back, so --out never holds a model whose card
    lacks its measured figures."""
    files = [path, path.with_suffix(".json")]
    kept = [file.with_name(f".{file.name}.before") for file in files]
    for old, aside in zip(files, kept):
        if old.exists():
            os.replace(old, aside)
    try:
        yield
    except BaseException:
        for new, aside in zip(files, kept):
            new.unlink(missing_ok=True)
            if aside.exists():
                os.replace(aside, new)
        raise
    for aside in kept:
        aside.unlink(missing_ok=True)
