"""Tiny ONNX graphs for tests, built with `onnx.helper` (no torch).

The tiny RNN cell has the named inputs/outputs of a real step model:

    x (batch, 4), state_h (batch, hidden)
      → state_h_out = tanh(x @ w_x + state_h @ w_h + b_h)     (batch, hidden)
      → logits      = state_h_out @ w_out + b_out            (batch, vocab)

`save_tiny_model` writes `<stem>.onnx` and its card (through write_card)
into a folder, ready for `resolve_model`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mtools.models.registry import model_stem, write_card

INPUT_SIZE = 4
OPSET = 17
IR_VERSION = 8  # old enough for any onnxruntime mtools supports

TINY_INPUTS = ("x", "state_h")
TINY_OUTPUTS = ("logits", "state_h_out")


def tiny_weights(hidden: int = 8, vocab: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded float32 weights for the tiny RNN cell, by initializer name."""
    rng = np.random.default_rng(seed)
    shapes = {
        "w_x": (INPUT_SIZE, hidden),
        "w_h": (hidden, hidden),
        "b_h": (hidden,),
        "w_out": (hidden, vocab),
        "b_out": (vocab,),
    }
    return {name: rng.normal(0, 0.5, shape).astype(np.float32) for name, shape in shapes.items()}


def tiny_rnn_model(
    weights: dict[str, np.ndarray],
    *,
    inputs: tuple[str, str] = TINY_INPUTS,
    outputs: tuple[str, str] = TINY_OUTPUTS,
) -> onnx.ModelProto:
    """The tiny RNN cell as an ONNX model; `inputs`/`outputs` rename the
    graph's (x, state_h) and (logits, state_h_out)."""
    hidden, vocab = weights["w_out"].shape
    x, state_h = inputs
    logits, state_out = outputs
    nodes = [
        helper.make_node("MatMul", [x, "w_x"], ["xw"]),
        helper.make_node("MatMul", [state_h, "w_h"], ["hw"]),
        helper.make_node("Add", ["xw", "hw"], ["pre0"]),
        helper.make_node("Add", ["pre0", "b_h"], ["pre"]),
        helper.make_node("Tanh", ["pre"], [state_out]),
        helper.make_node("MatMul", [state_out, "w_out"], ["ow"]),
        helper.make_node("Add", ["ow", "b_out"], [logits]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_rnn",
        [
            helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", INPUT_SIZE]),
            helper.make_tensor_value_info(state_h, TensorProto.FLOAT, ["batch", hidden]),
        ],
        [
            helper.make_tensor_value_info(logits, TensorProto.FLOAT, ["batch", vocab]),
            helper.make_tensor_value_info(state_out, TensorProto.FLOAT, ["batch", hidden]),
        ],
        initializer=[numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def tiny_rnn_reference(
    weights: dict[str, np.ndarray], x: np.ndarray, state_h: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """numpy reference of the cell: (logits (batch, vocab), state_h_out (batch, hidden))."""
    state_out = np.tanh(x @ weights["w_x"] + state_h @ weights["w_h"] + weights["b_h"])
    return state_out @ weights["w_out"] + weights["b_out"], state_out


def tiny_card(name: str = "tiny_rnn", config: str = "", **overrides: Any) -> dict[str, Any]:
    """A card dict for the tiny RNN; write_card fills in file, size, sha256."""
    card: dict[str, Any] = {
        "name": name,
        "config": config,
        "task": "continue",
        "description": "a tiny random RNN cell for tests",
        "inputs": list(TINY_INPUTS),
        "outputs": list(TINY_OUTPUTS),
        "hyperparameters": {"input_size": INPUT_SIZE, "hidden": 8, "vocab": 5},
        "encoding": {"vocab": ["a", "b", "c", "d", "e"]},
        "training": {"datasets": [], "command": "mtools train tiny_rnn tests/data"},
        "metrics": {},
    }
    card.update(overrides)
    return card


def save_tiny_model(
    folder: Path,
    name: str = "tiny_rnn",
    config: str = "",
    *,
    seed: int = 0,
    stem: str | None = None,
    model: onnx.ModelProto | None = None,
    **card_overrides: Any,
) -> Path:
    """Save the tiny RNN as `<stem>.onnx` (stem defaults to the registry
    stem of name/config) with its card beside it; returns the .onnx path."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / f"{stem or model_stem(name, config)}.onnx"
    onnx.save(model or tiny_rnn_model(tiny_weights(seed=seed)), onnx_path)
    write_card(tiny_card(name, config, **card_overrides), onnx_path)
    return onnx_path


SMOKE_DIR = Path(__file__).resolve().parent / "data" / "tiny_rnn"


def write_smoke_fixture(folder: Path = SMOKE_DIR) -> None:
    """Write the committed fixture that `inference_smoke.py` runs where onnx
    and torch are absent: the tiny model, its card, and golden.json with an
    input and the numpy reference's outputs for it."""
    onnx_path = save_tiny_model(folder)
    weights = tiny_weights()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, INPUT_SIZE)).astype(np.float32)
    state_h = rng.normal(size=(2, weights["w_h"].shape[0])).astype(np.float32)
    logits, state_out = tiny_rnn_reference(weights, x, state_h)
    golden = {"x": x, "state_h": state_h, "logits": logits, "state_h_out": state_out}
    text = json.dumps({k: v.tolist() for k, v in golden.items()}, indent=1)
    (onnx_path.parent / "golden.json").write_text(text + "\n")


if __name__ == "__main__":  # python tests/tiny_onnx.py regenerates the fixture
    write_smoke_fixture()
