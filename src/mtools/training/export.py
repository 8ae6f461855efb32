"""Export trained event RNNs to ONNX with the graph names the runtime
checks, and prove the export computes what torch computes.

The exported graph takes a whole time axis (so a primer is one call and
each generated step another) and explicit LSTM state, see
`mtools.models.sequence`. Weights are stored inside the one .onnx file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mtools.models.sequence import GRAPH_INPUTS, GRAPH_OUTPUTS

OPSET = 17
PARITY_TOLERANCE = 1e-4  # max |torch - onnx| on logits, float32


def export_event_rnn(model: nn.Module, path: Path) -> None:
    """Write `model` (an EventLSTM in eval mode) as a single-file ONNX graph
    with dynamic batch and time axes, atomically."""
    model = model.eval()
    config = model.config
    inputs = torch.zeros(2, 3, config["input_size"])
    state = model.zero_state(2)
    dynamic = {"inputs": {0: "batch", 1: "time"}, "state_h": {1: "batch"}, "state_c": {1: "batch"},
               "logits": {0: "batch", 1: "time"}, "state_h_out": {1: "batch"},
               "state_c_out": {1: "batch"}}
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with warnings.catch_warnings():
            # The tracer's notes on LSTM shape checks do not apply: the state
            # is an explicit input, so any batch and time run correctly (tested).
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (inputs, *state), str(temporary),
                              input_names=list(GRAPH_INPUTS), output_names=list(GRAPH_OUTPUTS),
                              dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def parity_error(model: nn.Module, path: Path, *, seed: int = 0) -> float:
    """Largest |torch - ONNX Runtime| over logits and states for random
    inputs of batch 3 and 40 steps, starting from a random state."""
    from mtools.runtime import load_session

    config = model.config
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(3, 40, config["input_size"])).astype(np.float32)
    shape = (config["layers"], 3, config["hidden"])
    state_h, state_c = (rng.normal(size=shape).astype(np.float32) * 0.5 for _ in range(2))
    with torch.no_grad():
        expected = model.eval()(*(torch.from_numpy(a) for a in (inputs, state_h, state_c)))
    session = load_session(path, inputs=GRAPH_INPUTS, outputs=GRAPH_OUTPUTS, device="cpu")
    got = session.run({"inputs": inputs, "state_h": state_h, "state_c": state_c})
    return max(float(np.abs(got[name] - want.numpy()).max())
               for name, want in zip(GRAPH_OUTPUTS, expected))
