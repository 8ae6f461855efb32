"""Attention states kept in a ring: an exported attention_rnn step returns
only the output (and its key) it pushes onto the stored ones, and the
runtime writes it over the oldest slot in place, instead of the graph
shifting every stored output and key along by one each step.

The attention's softmax and weighted sum do not depend on the order of the
slots, so the ring computes what the shifting graph computes, up to float
rounding. (With int8 weights, whose activations are quantized on the fly,
that rounding can move an activation to the next quantization step, so a
rewritten int8 model's outputs move as much as int8's own error, and its
figures by about 1e-3: the three bundled ones were measured again.) The
shift was two slices and two concatenations of (batch × attn_length ×
hidden) floats per step: about a quarter of a batch-64 step's kernel time
in ONNX Runtime's profiler (melody_rnn:attention_rnn, measured once by
hand; what the ring gains end to end is in benchmarks/results.md,
bench_continue, and the README).

`mtools train` exports attention networks in this form already; this
module's command rewrites an older export (and its card) in place:

    python -m mtools.training.ring MODEL.onnx [--data SOURCE ...]

The card's figures are measured again on the rewritten file. Needs `onnx`
(the train extra).
"""

from __future__ import annotations

from pathlib import Path

from mtools.models.sequence import PUSH_SUFFIX

METHOD = ("each ring state's output (Concat of a Slice that drops the oldest slot and the "
          "pushed step) replaced by the pushed step alone, output as NAME" + PUSH_SUFFIX
          + "; the runtime writes it over the oldest slot")


def ring_graph(model, names) -> None:
    """Rewrite an ONNX ModelProto in place so that each state in `names`,
    whose `NAME_out` is Concat(Slice(NAME), pushed), outputs `NAME_push`
    (= pushed, (batch, 1, ...)) instead. ValueError when a state's output
    is not made that way."""
    import onnx
    from onnx import helper

    graph = model.graph
    maker = {output: node for node in graph.node for output in node.output}
    outputs = {value.name: value for value in graph.output}
    for name in names:
        concat = maker.get(f"{name}_out")
        pushed = _pushed_input(graph, concat, maker, name)
        slicer = maker[concat.input[0]]
        value = outputs[f"{name}_out"]
        graph.node.remove(concat)
        if not any(slicer.output[0] in node.input for node in graph.node):
            graph.node.remove(slicer)
            _drop_unused_initializers(graph, slicer.input[1:])
        graph.node.append(helper.make_node("Identity", [pushed], [f"{name}{PUSH_SUFFIX}"],
                                           name=f"{name}{PUSH_SUFFIX}"))
        pushed_value = onnx.ValueInfoProto()
        pushed_value.CopyFrom(value)  # same type; the slot axis has one step
        pushed_value.name = f"{name}{PUSH_SUFFIX}"
        dims = pushed_value.type.tensor_type.shape.dim
        if len(dims) > 1:
            dims[1].Clear()
            dims[1].dim_value = 1
        index = list(graph.output).index(value)
        graph.output.remove(value)
        graph.output.insert(index, pushed_value)
    onnx.checker.check_model(model)


def _pushed_input(graph, concat, maker: dict, name: str) -> str:
    """The tensor a shifting Concat appends (its second input), checking
    that its first is a Slice of the state input `name` that drops the
    first slot of axis 1 and keeps the rest."""
    slicer = maker.get(concat.input[0]) if concat is not None and concat.input else None
    if (concat is None or concat.op_type != "Concat" or len(concat.input) != 2
            or [a.i for a in concat.attribute if a.name == "axis"] != [1]
            or slicer is None or slicer.op_type != "Slice" or slicer.input[0] != name
            or _slice_bounds(graph, maker, slicer) != (1, 1, 1)):
        raise ValueError(f"{name}_out is not Concat(Slice({name}, first slot dropped), new): "
                         "not a shifting state")
    return concat.input[1]


def _slice_bounds(graph, maker: dict, slicer) -> tuple | None:
    """(start, axis, step) of a one-axis Slice whose end reaches the last
    element, read from constants; None when they are not constants."""
    values = []
    for index in range(1, 5):
        name = slicer.input[index] if len(slicer.input) > index else ""
        values.append(_constant(graph, maker, name) if name else None)
        if name and values[-1] is None:
            return None
    starts, ends, axes, steps = values
    if any(v is not None and len(v) != 1 for v in values) or axes is None:
        return None
    return (int(starts[0]), int(axes[0]), 1 if steps is None else int(steps[0])) \
        if int(ends[0]) >= 2**31 - 1 else None


def _constant(graph, maker: dict, name: str):
    """The integer values (1-D array) of tensor `name` if it is an
    initializer or a Constant node's tensor or ints, else None."""
    import numpy as np
    from onnx import helper, numpy_helper

    init = next((i for i in graph.initializer if i.name == name), None)
    if init is not None:
        return numpy_helper.to_array(init).reshape(-1)
    node = maker.get(name)
    if node is None or node.op_type != "Constant" or len(node.attribute) != 1:
        return None
    attribute = node.attribute[0]
    if attribute.name == "value":
        return numpy_helper.to_array(attribute.t).reshape(-1)
    if attribute.name in ("value_int", "value_ints"):
        return np.array(helper.get_attribute_value(attribute)).reshape(-1)
    return None


def _drop_unused_initializers(graph, names) -> None:
    """Remove those of the constants `names` (initializers or Constant
    nodes) no node reads any more."""
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name in names and i.name not in used]:
        graph.initializer.remove(init)
    for node in [node for node in graph.node if node.op_type == "Constant"
                 and node.output[0] in names and node.output[0] not in used]:
        graph.node.remove(node)


def ring_file(source: Path, target: Path, names) -> None:
    """`ring_graph` from file `source` to file `target` (may be the same)."""
    import onnx

    model = onnx.load(str(source))
    ring_graph(model, names)
    onnx.save(model, str(target))


def ring_card(card: dict, names) -> dict:
    """A card's fields for the ring form: its outputs and hyperparameters."""
    names = list(names)
    shifted = {f"{name}_out": f"{name}{PUSH_SUFFIX}" for name in names}
    outputs = [shifted.get(output, output) for output in card["outputs"]]
    return {**card, "outputs": outputs,
            "hyperparameters": {**card["hyperparameters"], "ring_states": names}}


def ring_model(path: Path, data: list[str] | None = None) -> dict:
    """Rewrite the attention event RNN at `path` (and its card) into the
    ring form; its figures are measured again. Returns the new metrics."""
    from mtools.errors import ModelNotFoundError, UsageError
    from mtools.training.nets import AttentionLSTM
    from mtools.training.quantize import card_data, measure, measured_again_by, replace_model, \
        rewrite_note, tool_card

    path = Path(path)
    card = tool_card(path)
    names = AttentionLSTM.RING_STATES
    if card.get("hyperparameters", {}).get("ring_states"):
        raise UsageError(f"{path} keeps its attention states in a ring already")
    if not set(names) <= set(card.get("hyperparameters", {}).get("state_shapes", {})):
        raise UsageError(f"{path} is not an attention model: it has no "
                         + " or ".join(names) + " state")
    data = card_data(path, card, data)
    card.update(ring_card(card, names))

    def describe(temporary: Path) -> None:
        card["metrics"] = {**card["metrics"], **measure(temporary, data),
                           "measured_by": measured_again_by(
                               card["metrics"], "python -m mtools.training.ring (measured "
                                                "again on the rewritten file)")}
        card["ring"] = rewrite_note(path, METHOD, "ring", data, float32_size=False)

    def write(temporary: Path) -> None:
        try:
            ring_file(path, temporary, names)
        except ValueError as error:  # not the graph mtools train exported
            raise ModelNotFoundError(f"{path}: {error}") from error

    replace_model(path, card, write, describe, tag="ring")
    return card["metrics"]


def main() -> None:
    from mtools.training.quantize import run_tool, tool_card

    def rewrite(path: Path, data: list[str] | None) -> str:
        before = tool_card(path)["metrics"].get("nll_per_step")
        return f"{path}: nll_per_step {before} -> {ring_model(path, data).get('nll_per_step')}"

    run_tool("ring", __doc__, "src/mtools/models/bundled/melody_rnn-attention_rnn.onnx", rewrite)


if __name__ == "__main__":
    main()
