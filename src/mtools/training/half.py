"""Float16 storage for an exported MusicVAE or transcription model: every
large float32 weight is stored as float16 and cast back to float32 inside
the graph, so the file is half the size while ONNX Runtime still computes
in float32 (it folds the casts into float32 constants when the session
loads). Int8 (training/quantize.py) cost MusicVAE up to 3% of its
reconstruction figures; float16 storage only rounds each weight to 11
significant bits. The card's figures are measured again on the halved
file, and on the float32 one beside them (both now, on the same data), so
the card still describes what ships.

    python -m mtools.training.half MODEL.onnx [--data SOURCE ...]

rewrites MODEL.onnx and its card in place. A MusicVAE is measured on its
card's training datasets (or --data); a transcription model as `mtools
eval --model MODEL.onnx CORPUS --split valid` measures it, on the held-out
performances of its instrument's corpus (--data does not apply). Needs
`onnx` (the train extra).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MIN_ELEMENTS = 1024  # smaller tensors (biases, shapes) stay float32: no size to win
SUFFIX = ".float16"  # a halved weight's stored name: its float32 name + SUFFIX
METHOD = (f"each float32 weight of at least {MIN_ELEMENTS} values stored as float16 and cast "
          "to float32 in the graph (ONNX Runtime folds the casts when the session loads; "
          "compute stays float32)")


def halved(model):
    """The ONNX `model` with its large float32 initializers stored as
    float16 under NAME + SUFFIX, each followed by a Cast back to NAME, so
    the nodes that read NAME are unchanged."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inputs = {value.name for value in graph.input}  # an initializer a caller may override
    casts, kept = [], []
    for tensor in graph.initializer:
        if tensor.data_type != TensorProto.FLOAT or np.prod(tensor.dims) < MIN_ELEMENTS \
                or tensor.name in inputs:
            kept.append(tensor)
            continue
        values = numpy_helper.to_array(tensor)
        if np.abs(values).max() > np.finfo(np.float16).max:
            raise ValueError(f"{tensor.name} holds values beyond float16's range")
        kept.append(numpy_helper.from_array(values.astype(np.float16), tensor.name + SUFFIX))
        casts.append(helper.make_node("Cast", [tensor.name + SUFFIX], [tensor.name],
                                      name=f"{tensor.name}_to_float32", to=TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)  # the casts first: the graph stays in order
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def widened(model):
    """`halved` undone: each Cast of a float16 initializer becomes a
    float32 initializer under the Cast's output name (warm starts read
    weights by the names the nodes use)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    stored = {t.name: t for t in graph.initializer}
    widen = {node.output[0]: node.input[0] for node in graph.node
             if node.op_type == "Cast" and node.input[0] in stored
             and stored[node.input[0]].data_type == TensorProto.FLOAT16
             and any(a.name == "to" and helper.get_attribute_value(a) == TensorProto.FLOAT
                     for a in node.attribute)}
    nodes = [node for node in graph.node
             if not (node.op_type == "Cast" and node.output[0] in widen)]
    del graph.node[:]
    graph.node.extend(nodes)
    halves = set(widen.values())
    kept = [t for t in graph.initializer if t.name not in halves]
    kept += [numpy_helper.from_array(numpy_helper.to_array(stored[half]).astype(np.float32), name)
             for name, half in widen.items()]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model


def is_halved(graph) -> bool:
    return any(t.name.endswith(SUFFIX) for t in graph.initializer)


def measure(path: Path, data: list[str], split: str = "valid") -> dict:
    """The figures `mtools eval` prints for the MusicVAE or transcription
    model at path (a transcription model: on its corpus, at its thresholds)."""
    from mtools.commands.eval import music_vae_figures, transcription_figures
    from mtools.models.registry import resolve_model
    from mtools.models.transcription import CLASS_THRESHOLDS, THRESHOLDS, DecodeOptions

    ref = resolve_model(str(path))
    if ref.card.task == "transcribe":
        from mtools.models.onsets_frames import OnsetsFrames
        from mtools.training.render_sources import INSTRUMENTS
        from mtools.training.renders import card_valid_part
        from mtools.training.transcription import other_soundfont_figures

        figures = transcription_figures(ref, data, [], split, "cpu", DecodeOptions(), quiet=True)
        instrument = INSTRUMENTS.get(ref.card.name)
        if instrument is not None and instrument.test_soundfonts and data == [instrument.corpus]:
            net = OnsetsFrames.from_ref(ref, device="cpu")
            figures.update(other_soundfont_figures(net, instrument,
                                                   valid_part=card_valid_part(ref.card)))
        return {k: v for k, v in figures.items() if k not in (*THRESHOLDS, CLASS_THRESHOLDS)}
    return music_vae_figures(ref, data, split, "cpu")


def halve_model(path: Path, data: list[str] | None = None) -> dict:
    """Store a MusicVAE's weights as float16, card included; returns the
    card's new metrics (the float32 figures and parity move under
    metrics.float32)."""
    import onnx

    from mtools.errors import UsageError
    from mtools.training.quantize import card_data, measured_again, replace_model, \
        rewrite_note, tool_card
    from mtools.training.render_sources import INSTRUMENTS

    path = Path(path)
    card = tool_card(path)
    if card.get("storage") or card.get("quantization"):
        raise UsageError(f"{path} is already stored in fewer bits")
    instrument = INSTRUMENTS.get(card.get("name"))
    if card.get("name") != "music_vae" and instrument is None:
        raise UsageError(f"{path}: only MusicVAE and transcription models are stored as float16 "
                         "(the event RNNs ship int8: python -m mtools.training.quantize)")
    if instrument is not None and data:
        raise UsageError(f"{path}: a transcription model is measured on {instrument.corpus}'s "
                         "held-out performances; --data does not apply")
    data = [instrument.corpus] if instrument is not None else card_data(path, card, data)
    before = measure(path, data)

    def write(temporary: Path) -> None:
        onnx.save(halved(onnx.load(str(path))), str(temporary))

    def describe(temporary: Path) -> None:
        card["metrics"] = measured_again(
            card["metrics"], before, measure(temporary, data),
            "python -m mtools.training.half (float16 and float32 figures, same data)")
        card["storage"] = rewrite_note(path, METHOD, "half", [] if instrument else data)

    replace_model(path, card, write, describe, tag="float16")
    return card["metrics"]


def main() -> None:
    from mtools.training.quantize import rewritten_line, run_tool

    def rewrite(path: Path, data: list[str] | None) -> str:
        return rewritten_line(path, halve_model(path, data), ("note_f1", "accuracy_sampled"))

    run_tool("half", __doc__, "~/.cache/mtools/export/music_vae-mel_16bar.onnx", rewrite)


if __name__ == "__main__":
    main()
