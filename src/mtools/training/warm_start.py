"""Weights back from an exported float ONNX graph into the torch network
that made it, so a run whose checkpoints are gone can go on from the
bundled model (`mtools train ... --init-from MODEL`).

torch.onnx.export keeps a parameter's name when the graph uses it as it is
(`to_mu.weight`), stores a linear layer's weight transposed under a made-up
name when it becomes a MatMul, and rewrites each LSTM layer into one ONNX
LSTM node: W (directions, 4·hidden, inputs), R (directions, 4·hidden,
hidden) and B (directions, 8·hidden: input biases, then recurrent ones),
gates in the order i, o, f, c where torch keeps i, f, g, o. This module
undoes exactly that, and the caller proves the result by parity with the
file (see `load_exported`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from mtools.errors import MtoolsError

ONNX_TO_TORCH_GATES = (0, 2, 3, 1)  # torch's i, f, g, o from ONNX's i, o, f, c


def _gates(block: np.ndarray) -> np.ndarray:
    """(4·hidden, ...) in ONNX gate order → torch gate order."""
    blocks = np.split(block, 4)
    return np.concatenate([blocks[i] for i in ONNX_TO_TORCH_GATES])


def _lstm_layers(model: nn.Module) -> list[tuple[str, int, bool]]:
    """(module name, layer, bidirectional) of every LSTM layer in the order
    the model's modules were registered (the order its forward runs them)."""
    return [(name, layer, module.bidirectional)
            for name, module in model.named_modules() if isinstance(module, nn.LSTM)
            for layer in range(module.num_layers)]


def state_dict_from_onnx(model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """A state dict for `model` read from the float ONNX export at `path`.
    MtoolsError when the file holds quantized weights or a different
    network (a parameter with no unambiguous counterpart)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    if any(node.op_type in ("DynamicQuantizeMatMul", "MatMulInteger", "DynamicQuantizeLSTM")
           for node in graph.node):
        raise MtoolsError(f"{path}: its weights are quantized (int8); --init-from needs the "
                          "float export")
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    wanted = dict(model.state_dict())
    found: dict[str, np.ndarray] = {}
    lstm_nodes = [node for node in graph.node if node.op_type == "LSTM"]
    layers = _lstm_layers(model)
    if len(lstm_nodes) != len(layers):
        raise MtoolsError(f"{path}: {len(lstm_nodes)} LSTM layers in the file, "
                          f"{len(layers)} in the network")
    for node, (name, layer, both) in zip(lstm_nodes, layers):
        w, r, b = (tensors.get(node.input[i]) for i in (1, 2, 3))
        if w is None or r is None or b is None:
            raise MtoolsError(f"{path}: an LSTM node's weights are not stored constants")
        for direction, suffix in enumerate(("", "_reverse") if both else ("",)):
            hidden = r.shape[2]
            key = f"{name}.{{}}_l{layer}{suffix}"
            found[key.format("weight_ih")] = _gates(w[direction])
            found[key.format("weight_hh")] = _gates(r[direction])
            found[key.format("bias_ih")] = _gates(b[direction][:4 * hidden])
            found[key.format("bias_hh")] = _gates(b[direction][4 * hidden:])
    used = {node.input[i] for node in lstm_nodes for i in (1, 2, 3)}
    rest = {name: value for name, value in tensors.items() if name not in used}
    for name, value in wanted.items():
        if name in found:
            continue
        if name in rest and rest[name].shape == tuple(value.shape):
            found[name] = rest.pop(name)
    for name, value in wanted.items():  # linear weights stored transposed for a MatMul
        if name in found:
            continue
        shape = tuple(value.shape)[::-1]
        matches = [key for key, array in rest.items()
                   if array.shape == shape and key not in wanted]
        if len(matches) != 1:
            raise MtoolsError(f"{path}: no single weight in the file fits {name} "
                              f"{tuple(value.shape)} ({len(matches)} candidates)")
        found[name] = rest.pop(matches[0]).T
    for name, value in wanted.items():
        if tuple(found[name].shape) != tuple(value.shape):
            raise MtoolsError(f"{path}: {name} is {tuple(found[name].shape)} in the file, "
                              f"{tuple(value.shape)} in the network")
    return {name: torch.from_numpy(np.array(found[name], copy=True)).to(value.dtype)
            for name, value in wanted.items()}


def load_exported(model: nn.Module, path: Path, parity) -> float:
    """Load the weights of the ONNX export at `path` into `model` and
    return parity(model, path), the largest |torch - ONNX Runtime| of the
    caller's parity check; MtoolsError when it exceeds 1e-4 (the file is
    not an export of this network)."""
    from mtools.training.export import PARITY_TOLERANCE

    model.load_state_dict(state_dict_from_onnx(model, path))
    error = parity(model, path)
    if not error <= PARITY_TOLERANCE:
        raise MtoolsError(f"{path}: the network with these weights computes something else "
                          f"than the file (max difference {error:.2e})")
    return error
