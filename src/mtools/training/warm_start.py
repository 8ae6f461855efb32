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
file (see `load_exported`).

The event RNNs ship with int8 weights (training/quantize.py): ONNX
Runtime's dynamic quantization turned each LSTM into a DynamicQuantizeLSTM
and each MatMul into MatMulInteger between on-the-fly quantized
activations and int8 weights (per output channel: scale and zero point).
`dequantized` rewrites such a graph back into float nodes whose weights
are (int8 - zero point) · scale, the same network up to rounding; the
weights are then read from it as from a float export, and parity is
proved against it (the int8 file itself differs by its quantization).
Coconet ships int8 weights and activations in ONNX's QDQ form
(training/quantize.py, `quantize_static_file`): each stored weight goes
through a DequantizeLinear, each activation through a QuantizeLinear →
DequantizeLinear pair; `dequantized` turns the weights back into floats and
takes the pairs out, which leaves the float network (its ReLUs are kept as
nodes for this). MusicVAE files may store float16 weights (training/half.py): `widened`
reads them back as float32, and the file computes exactly that network."""

from __future__ import annotations

import json
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


def state_dict_from_graph(model: nn.Module, graph, path: Path) -> dict[str, torch.Tensor]:
    """A state dict for `model` read from the float graph of the ONNX
    export at `path` (int8 files: `dequantized` first). MtoolsError when it
    is a different network (a parameter with no unambiguous counterpart)."""
    from onnx import numpy_helper

    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    wanted = dict(model.state_dict())
    found: dict[str, np.ndarray] = {}
    if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        found.update(_folded_conv_state(model, graph, tensors, path))
        conv_weights = {name for node in graph.node if node.op_type == "Conv"
                        for name in node.input[1:]}
        tensors = {name: value for name, value in tensors.items() if name not in conv_weights}
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
    first_use: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            first_use.setdefault(name, index)
    rest = {name: value for name, value in tensors.items() if name not in used}
    for name, value in wanted.items():
        if name in found:
            continue
        if name in rest and rest[name].shape == tuple(value.shape):
            found[name] = rest.pop(name)
    for name, value in wanted.items():  # a dequantized MatMul keeps its weight's name
        key = f"{name}{TRANSPOSED}"
        if name not in found and key in rest and rest[key].shape == tuple(value.shape)[::-1]:
            found[name] = rest.pop(key).T
    for name, value in wanted.items():  # linear weights stored transposed for a MatMul
        if name in found:
            continue
        shape = tuple(value.shape)[::-1]
        matches = [key for key, array in rest.items()
                   if array.shape == shape and key not in wanted]
        if matches:  # several (parts of the same size): the graph uses them in the order the
            # network registered them; parity proves it
            found[name] = rest.pop(min(matches, key=lambda k: first_use.get(k, len(graph.node)))).T
            continue
        halves = _split_columns(graph, rest, tuple(value.shape)) \
            if not matches and value.dim() == 2 else None
        if halves is None:
            raise MtoolsError(f"{path}: no single weight in the file fits {name} "
                              f"{tuple(value.shape)} ({len(matches)} candidates)")
        found[name] = np.concatenate([rest.pop(key).T for key in halves], axis=1)
    for name, value in wanted.items():
        if tuple(found[name].shape) != tuple(value.shape):
            raise MtoolsError(f"{path}: {name} is {tuple(found[name].shape)} in the file, "
                              f"{tuple(value.shape)} in the network")
    return {name: torch.from_numpy(np.array(found[name], copy=True)).to(value.dtype)
            for name, value in wanted.items()}


def _conv_norm_pairs(model: nn.Module) -> list[tuple[str, str | None]]:
    """(convolution, the batch norm right after it or None), in the order
    the modules were made, which is the order forward uses them in the
    networks that have them (Coconet, Onsets and Frames' stack)."""
    named = [(name, module) for name, module in model.named_modules()
             if isinstance(module, (nn.Conv2d, nn.BatchNorm2d))]
    pairs = []
    for index, (name, module) in enumerate(named):
        if isinstance(module, nn.Conv2d):
            after = named[index + 1] if index + 1 < len(named) else None
            pairs.append((name, after[0] if after and isinstance(after[1], nn.BatchNorm2d)
                          else None))
    return pairs


def _folded_conv_state(model: nn.Module, graph, tensors: dict[str, np.ndarray],
                       path: Path) -> dict[str, np.ndarray]:
    """The convolutions' and batch norms' part of a state dict for a
    network whose export folded each batch norm into the convolution
    before it: the graph's Conv nodes in order give each convolution its
    folded weight and bias, and each batch norm becomes the identity in
    eval mode (`_identity`), so the network computes the file's function.
    Training mode normalizes by the batch instead: call
    `calibrate_folded_norms` before training on."""
    convs = [node for node in graph.node if node.op_type == "Conv"]
    pairs = _conv_norm_pairs(model)
    if len(convs) != len(pairs):
        raise MtoolsError(f"{path}: {len(convs)} convolutions in the file, "
                          f"{len(pairs)} in the network")
    modules = dict(model.named_modules())
    found: dict[str, np.ndarray] = {}
    for node, (conv, norm) in zip(convs, pairs):
        weight, bias = (tensors.get(node.input[i]) if len(node.input) > i else None
                        for i in (1, 2))
        if weight is None or bias is None:
            raise MtoolsError(f"{path}: a convolution's weights are not stored constants")
        found[f"{conv}.weight"], found[f"{conv}.bias"] = weight, bias
        if norm is not None:
            module = modules[norm]
            _identity(module)
            found.update({f"{norm}.{key}": value.numpy()
                          for key, value in module.state_dict().items()})
    return found


@torch.no_grad()
def _identity(norm: nn.BatchNorm2d) -> None:
    """Make a batch norm the identity in eval mode: weight 1, bias 0,
    running mean 0, running variance 1 - eps."""
    norm.weight.fill_(1.0)
    norm.bias.zero_()
    norm.running_mean.zero_()
    norm.running_var.fill_(1.0 - norm.eps)
    norm.num_batches_tracked.zero_()


@torch.no_grad()
def calibrate_folded_norms(model: nn.Module, batches) -> None:
    """After `_folded_conv_state`: give each batch norm the mean and
    variance of its input over `batches` (each the model's forward
    arguments) as its running statistics, and sqrt(variance + eps) and the
    mean as its weight and bias. Eval mode stays exactly the file's
    function, and training mode, which normalizes by the batch, computes
    about the same (it did not: each channel came out standardized)."""
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    for norm in norms:  # the identity the folded weights were loaded with, whatever ran since
        _identity(norm)
    sums = {id(n): [0.0, 0.0, 0] for n in norms}

    def record(module, inputs, _output):
        x = inputs[0].double()
        total = sums[id(module)]
        total[0] = total[0] + x.sum(dim=(0, 2, 3))
        total[1] = total[1] + (x * x).sum(dim=(0, 2, 3))
        total[2] += x.numel() // x.shape[1]

    hooks = [n.register_forward_hook(record) for n in norms]
    try:
        model.eval()
        for batch in batches:
            model(*batch)
    finally:
        for hook in hooks:
            hook.remove()
    for norm in norms:
        first, second, count = sums[id(norm)]
        mean = first / count
        variance = (second / count - mean * mean).clamp(min=0)
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(variance)
        norm.weight.copy_(torch.sqrt(variance + norm.eps))
        norm.bias.copy_(mean)


def _split_columns(graph, rest: dict[str, np.ndarray], shape: tuple[int, int]
                   ) -> tuple[str, str] | None:
    """The two stored weights that hold a (out, in) linear weight split by
    input columns, first columns first: a network that applies one weight
    to two inputs apart (AttentionLSTM.project_in: its `inputs` columns and
    its attention columns) exports two MatMuls, which constant folding
    leaves as two stored weights. The one whose MatMul takes the graph's
    `inputs` holds the first columns. None when no such pair is unique."""
    out, columns = shape
    pairs = [(a, b) for a in rest for b in rest if a != b
             and rest[a].ndim == rest[b].ndim == 2 and rest[a].shape[1] == rest[b].shape[1] == out
             and rest[a].shape[0] + rest[b].shape[0] == columns]
    on_inputs = {node.input[1] for node in graph.node
                 if node.op_type == "MatMul" and node.input[0] == "inputs"}
    pairs = [(a, b) for a, b in pairs if a in on_inputs and b not in on_inputs]
    return pairs[0] if len(pairs) == 1 else None


# ---------------------------------------------------------------- int8 graphs

TRANSPOSED = "_Transposed"  # the suffix quantization gives a transposed MatMul weight
QUANTIZED_NODES = ("DynamicQuantizeMatMul", "MatMulInteger", "DynamicQuantizeLSTM")


def is_quantized(graph) -> bool:
    return any(node.op_type in QUANTIZED_NODES or is_qdq(node) for node in graph.node)


def is_qdq(node) -> bool:
    return node.op_type in ("QuantizeLinear", "DequantizeLinear")


def dequantized(model):
    """An int8 ONNX model (see the module doc) rewritten with float weights:
    each DynamicQuantizeLSTM becomes an LSTM, each DynamicQuantizeLinear →
    MatMulInteger → Cast → Mul chain one MatMul of the float activation.
    A weight named BASE_quantized (with BASE_scale, BASE_zero_point) comes
    back as BASE. A QDQ graph: see `without_qdq`. MtoolsError for quantized
    nodes of any other shape."""
    from onnx import helper, numpy_helper

    graph = model.graph
    if any(is_qdq(node) for node in graph.node):
        return without_qdq(model)
    stored = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def weight(quantized_name: str) -> str:
        base = quantized_name.removesuffix("_quantized")
        values = numpy_helper.to_array(stored[quantized_name]).astype(np.float32)
        scale = numpy_helper.to_array(stored[f"{base}_scale"]).astype(np.float32)
        zero = numpy_helper.to_array(stored[f"{base}_zero_point"]).astype(np.float32)
        if values.ndim == 3 and scale.ndim == 2:  # an LSTM's (directions, in, 4·hidden)
            scale, zero = scale[:, None, :], zero[:, None, :]
        floats[base] = (values - zero) * scale  # per output channel: the last axis
        return base

    floats: dict[str, np.ndarray] = {}
    nodes, replaced = [], set()
    for node in graph.node:
        if node.op_type == "DynamicQuantizeLSTM":
            w, r = weight(node.input[1]), weight(node.input[2])
            floats[w], floats[r] = floats[w].transpose(0, 2, 1), floats[r].transpose(0, 2, 1)
            lstm = helper.make_node("LSTM", [node.input[0], w, r, *node.input[3:8]],
                                    list(node.output), name=f"{node.name}_float")
            lstm.attribute.extend(node.attribute)
            nodes.append(lstm)
        elif node.op_type == "MatMulInteger":
            activation = producer.get(node.input[0])
            cast = (consumers.get(node.output[0]) or [None])[0]
            scale = (consumers.get(cast.output[0]) or [None])[0] if cast is not None else None
            if activation is None or activation.op_type != "DynamicQuantizeLinear" \
                    or cast is None or cast.op_type != "Cast" or scale is None \
                    or scale.op_type != "Mul":
                raise MtoolsError("an int8 graph of a shape mtools did not make")
            nodes.append(helper.make_node("MatMul", [activation.input[0], weight(node.input[1])],
                                          list(scale.output), name=f"{node.name}_float"))
            replaced |= {id(cast), id(scale)}
        elif node.op_type == "DynamicQuantizeMatMul":
            raise MtoolsError("an int8 graph of a shape mtools did not make")
        elif node.op_type != "DynamicQuantizeLinear":
            nodes.append(node)
    nodes = [node for node in nodes if id(node) not in replaced]
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(nodes):  # drop what only fed the removed nodes (scale products)
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    used = {name for node in kept for name in node.input}
    initializers = [t for t in graph.initializer if t.name in used and t.name not in floats]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    graph.initializer.extend(numpy_helper.from_array(array, name)
                             for name, array in floats.items())
    return model


def without_qdq(model):
    """A QDQ model (see the module doc) as the float network: each
    DequantizeLinear of a stored int8 tensor becomes that tensor in float,
    (int8 - zero point) · scale, and each QuantizeLinear → DequantizeLinear
    pair on an activation is taken out. MtoolsError for a QuantizeLinear
    that is not so paired."""
    from onnx import helper, numpy_helper

    graph = model.graph
    stored = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    floats: dict[str, np.ndarray] = {}
    bypass: dict[str, str] = {}  # a pair's output → the activation it quantized
    producer = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        source = producer.get(node.input[0])
        if node.input[0] in stored:
            values, scale = stored[node.input[0]], stored[node.input[1]]
            zero = stored[node.input[2]] if len(node.input) > 2 and node.input[2] else 0
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if np.ndim(scale) == 1 and values.ndim > 1:  # per channel along `axis`
                shape = [1] * values.ndim
                shape[axis] = -1
                scale, zero = np.reshape(scale, shape), np.reshape(zero, shape)
            floats[node.output[0]] = ((values.astype(np.float32) - np.float32(zero))
                                      * scale.astype(np.float32)).astype(np.float32)
        elif source is not None and source.op_type == "QuantizeLinear":
            bypass[node.output[0]] = source.input[0]
        else:
            raise MtoolsError("an int8 graph of a shape mtools did not make")
    kept = [node for node in graph.node if not is_qdq(node)]
    quantized = {node.output[0] for node in graph.node if node.op_type == "QuantizeLinear"}
    if any(name in quantized for node in kept for name in node.input):
        raise MtoolsError("an int8 graph of a shape mtools did not make")
    for node in kept:
        for index, name in enumerate(node.input):
            node.input[index] = bypass.get(name, name)
    kept += [helper.make_node("Identity", [bypass[output.name]], [output.name])
             for output in graph.output if output.name in bypass]
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    initializers = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    graph.initializer.extend(numpy_helper.from_array(array, name)
                             for name, array in floats.items() if name in used)
    return model


def load_exported(model: nn.Module, path: Path, parity) -> float:
    """Load the weights of the ONNX export at `path` into `model` and
    return parity(model, path), the largest |torch - ONNX Runtime| of the
    caller's parity check; MtoolsError when it exceeds 1e-4 (the file is
    not an export of this network)."""
    return load_export(model, path, parity)[0]


def load_export(model: nn.Module, path: Path, parity) -> tuple[float, bool]:
    """`load_exported`, and whether the file held int8 weights (read once)."""
    import tempfile

    import onnx

    from mtools.training.export import PARITY_TOLERANCE
    from mtools.training.half import is_halved, widened

    exported = onnx.load(str(path))
    quantized = is_quantized(exported.graph)
    if quantized:
        exported = dequantized(exported)
    elif is_halved(exported.graph):  # float16 weights cast to float32: exact in float32
        exported = widened(exported)
    model.load_state_dict(state_dict_from_graph(model, exported.graph, path))
    if not quantized:
        error = parity(model, path)
    else:  # the same network with float weights: parity proves the mapping
        with tempfile.TemporaryDirectory() as folder:
            floats = Path(folder) / path.name
            onnx.save(exported, str(floats))
            error = parity(model, floats)
    if not error <= PARITY_TOLERANCE:
        raise MtoolsError(f"{path}: the network with these weights computes something else "
                          f"than the file (max difference {error:.2e})")
    return error, quantized


def warm_start(run_dir: Path, model: nn.Module, init_from: Path | None, init_spec: str | None,
               parity, progress, donor: nn.Module | None = None, take=None) -> dict | None:
    """`--init-from`: with no checkpoint in `run_dir` to resume, load the
    weights of the export at `init_from` into `model` (proved by
    `parity`, see `load_exported`) and return what a card says of them
    (file, spec, sha256, parity, and that file's own training command and
    steps), kept in the run folder so a resumed run still says where it
    began; the run folder's own checkpoint, when there is one, wins. None
    for a run that did not start from an export.

    `donor`: the file is a different network of the same family (say
    MusicVAE's 2-bar melody model for the 16-bar one): its weights load
    into `donor` (built like the file's network; parity proves them), and
    `model` takes every tensor of the same name and shape; the note lists
    the tensors taken and those left as initialised. `take(model, donor)`,
    when given, fills `model` from `donor` instead and returns the note's
    words for it (see training/widen.py)."""
    from mtools.training.loop import resumable

    note_path = run_dir / "init_from.json"
    if resumable(run_dir) is not None:
        if init_from is not None:
            progress(f"{run_dir} holds a run: resuming it (--init-from starts a new one)")
        return json.loads(note_path.read_text()) if note_path.exists() else None
    note_path.unlink(missing_ok=True)
    if init_from is None:
        return None
    error, quantized = load_export(donor if donor is not None else model, init_from, parity)
    note = export_note(init_from, init_spec, error, quantized)
    if donor is not None:
        note.update((take or take_matching)(model, donor))
    run_dir.mkdir(parents=True, exist_ok=True)
    note_path.write_text(json.dumps(note, indent=1) + "\n")
    progress(f"starting from the weights of {init_from} (parity {error:.1e})")
    return note


def warm_start_folded(run_dir: Path, model: nn.Module, init_from: Path | None,
                      init_spec: str | None, parity, progress, calibration,
                      donor: nn.Module | None = None, take=None) -> dict | None:
    """`warm_start` for a network whose export folded its batch norms into
    its convolutions (Coconet, Onsets and Frames): a new run from an export
    measures them again on `calibration()`, a list of the model's forward
    arguments (see `calibrate_folded_norms`); a resumed run keeps its own.
    `donor`, `take`: as for `warm_start`."""
    from mtools.training.loop import resumable

    new_run = resumable(run_dir) is None
    init = warm_start(run_dir, model, init_from, init_spec, parity, progress, donor, take)
    if init is not None and new_run:
        calibrate_folded_norms(model, calibration())
    return init


def export_note(path: Path, spec: str | None, error: float, quantized: bool) -> dict:
    """What a card says of an export a run started from: file, spec,
    sha256, parity, and that file's own training command and steps."""
    from mtools.models.registry import file_sha256

    note = {"file": path.name, "spec": spec or str(path), "sha256": file_sha256(path),
            "parity_max_abs_error": float(f"{error:.2e}")}
    if quantized:
        note["dequantized"] = ("int8 weights read back as (int8 - zero point) · scale, int8 "
                               "activations (if any) as float: parity is with that float network")
    earlier = card_beside(path).get("training", {})
    note.update({f"its_{k}": earlier[k]
                 for k in ("command", "steps", "seconds", "best_step") if k in earlier})
    return note


def card_beside(path: Path) -> dict:
    """The model card beside an export (NAME.json), {} when it has none."""
    card = path.with_suffix(".json")
    return json.loads(card.read_text()) if card.exists() else {}


@torch.no_grad()
def take_matching(model: nn.Module, donor: nn.Module) -> dict[str, list[str]]:
    """Copy into `model` every tensor of `donor` with the same name and
    shape; the names taken and the names `model` keeps as they were.
    MtoolsError when nothing matches (the donor is another family)."""
    given = donor.state_dict()
    mine = model.state_dict()
    taken = [name for name, value in mine.items()
             if name in given and given[name].shape == value.shape]
    if not taken:
        raise MtoolsError("the --init-from network shares no tensor with this one")
    model.load_state_dict({**mine, **{name: given[name] for name in taken}})
    return {"took": taken, "kept_initialised": [name for name in mine if name not in taken]}
