"""Attention states kept in a ring: an exported attention_rnn step returns
only the output (and its key) it pushes onto the stored ones, and the
runtime writes it over the oldest slot in place, instead of the graph
shifting every stored output and key along by one each step.

The attention's softmax and weighted sum do not depend on the order of the
slots, so the ring computes what the shifting graph computes, up to float
rounding. The shift was two slices and two concatenations of (batch ×
attn_length × hidden) floats per step, a quarter of a batch-64 step's kernel
time in ONNX Runtime's profile (benchmarks/results.md).

`mtools train` exports attention networks in this form already; this
module's command rewrites an older export (and its card) in place:

    python -m mtools.training.ring MODEL.onnx [--data SOURCE ...]

The card's figures are measured again on the rewritten file. Needs `onnx`
(the train extra).
"""

from __future__ import annotations

import json
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
        pushed = _pushed_input(concat, maker, name)
        slicer = maker[concat.input[0]]
        value = outputs[f"{name}_out"]
        shape = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        graph.node.remove(concat)
        if not any(slicer.output[0] in node.input for node in graph.node):
            graph.node.remove(slicer)
        graph.node.append(helper.make_node("Identity", [pushed], [f"{name}{PUSH_SUFFIX}"],
                                           name=f"{name}{PUSH_SUFFIX}"))
        index = list(graph.output).index(value)
        graph.output.remove(value)
        graph.output.insert(index, helper.make_tensor_value_info(
            f"{name}{PUSH_SUFFIX}", value.type.tensor_type.elem_type,
            [shape[0], 1, *shape[2:]] if shape else None))
    _drop_unused_initializers(graph)
    onnx.checker.check_model(model)


def _pushed_input(concat, maker: dict, name: str) -> str:
    """The tensor a shifting Concat appends (its second input), checking
    that its first is a Slice of the state input `name`."""
    if (concat is None or concat.op_type != "Concat" or len(concat.input) != 2
            or concat.input[0] not in maker or maker[concat.input[0]].op_type != "Slice"
            or maker[concat.input[0]].input[0] != name):
        raise ValueError(f"{name}_out is not Concat(Slice({name}), new): not a shifting state")
    return concat.input[1]


def _drop_unused_initializers(graph) -> None:
    """Remove the initializers no node reads any more (the Slice's bounds)."""
    used = {name for node in graph.node for name in node.input}
    for init in [init for init in graph.initializer if init.name not in used]:
        graph.initializer.remove(init)


def ring_file(source: Path, target: Path, names) -> None:
    """`ring_graph` from file `source` to file `target` (may be the same)."""
    import onnx

    model = onnx.load(str(source))
    ring_graph(model, names)
    onnx.save(model, str(target))


def ring_card(card: dict, names) -> dict:
    """A card's fields for the ring form: its outputs and hyperparameters."""
    names = list(names)
    outputs = [f"{o[:-len('_out')]}{PUSH_SUFFIX}" if o.endswith("_out") and o[:-len("_out")] in names
               else o for o in card["outputs"]]
    return {**card, "outputs": outputs,
            "hyperparameters": {**card["hyperparameters"], "ring_states": names}}


def ring_model(path: Path, data: list[str] | None = None) -> dict:
    """Rewrite the attention event RNN at `path` (and its card) into the
    ring form; its figures are measured again. Returns the new metrics."""
    from mtools.errors import UsageError
    from mtools.training.nets import AttentionLSTM
    from mtools.training.quantize import card_data, measure, replace_model, rewrite_note

    path = Path(path)
    card = json.loads(path.with_suffix(".json").read_text())
    names = AttentionLSTM.RING_STATES
    if card.get("hyperparameters", {}).get("ring_states"):
        raise UsageError(f"{path} keeps its attention states in a ring already")
    if not set(names) <= set(card.get("hyperparameters", {}).get("state_shapes", {})):
        raise UsageError(f"{path} is not an attention model: it has no "
                         + " or ".join(names) + " state")
    data = card_data(path, card, data)
    card.update(ring_card(card, names))

    def describe(temporary: Path) -> None:
        reproduce = card["metrics"].get("measured_by", "").partition("reproduce: ")[2]
        card["metrics"] = {**card["metrics"], **measure(temporary, data),
                           "measured_by": "python -m mtools.training.ring (measured again "
                                          "on the rewritten file)"
                                          + (f"; reproduce: {reproduce}" if reproduce else "")}
        card["ring"] = rewrite_note(path, METHOD, "ring", data)
        del card["ring"]["float32_size_bytes"]  # the weights keep their format and size

    replace_model(path, card, lambda temporary: ring_file(path, temporary, names), describe,
                  tag="ring")
    return card["metrics"]


def main() -> None:
    from mtools.training.quantize import model_arguments

    args = model_arguments(__doc__, "python -m mtools.training.ring "
                           "src/mtools/models/bundled/melody_rnn-attention_rnn.onnx")
    for path in args.models:
        before = json.loads(path.with_suffix(".json").read_text())["metrics"]
        metrics = ring_model(path, args.data)
        print(f"{path}: nll_per_step {before.get('nll_per_step')} -> "
              f"{metrics.get('nll_per_step')}")


if __name__ == "__main__":
    main()
