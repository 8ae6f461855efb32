"""Int8 weights for an exported event RNN (Melody, Drums, Improv RNN): ONNX
Runtime's dynamic quantization stores the LSTM and MatMul weights as int8
(activations stay float, quantized on the fly), a quarter of the file, and
its kernels run faster. Weights use 7 bits per channel (reduce_range,
per_channel): x86 CPUs without VNNI saturate 8-bit products, so with 8 bits
outputs would differ between CPUs; 7 bits per channel measured as well as
float here. The card's figures are measured again on the
quantized file, and on the float one beside them (both now, on the same
data), so the card still describes what ships.

Coconet's convolutions are quantized statically instead
(`quantize_static_file`): activations too are int8, with ranges measured
once on training crops, so ONNX Runtime runs each convolution as one int8
kernel (one pass over 16 bars: 30 ms against 53-62 ms in float32 on a
2-core EPYC, the bundled Coconet, scratch timing).

    python -m mtools.training.quantize MODEL.onnx [--data SOURCE ...]

rewrites MODEL.onnx and its card in place (sources default to the card's
training datasets). Needs `onnx` (the train extra).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from mtools.runtime import _import_ort

QUANTIZED_OPS = ("LSTM", "MatMul", "Gemm")
METHOD = ("ONNX Runtime basic graph optimizations (constants folded), then "
          "onnxruntime.quantization.quantize_dynamic, weight_type QInt8, reduce_range (7-bit), "
          "per_channel, ops " + ", ".join(QUANTIZED_OPS) + "; activations float, quantized "
          "per call")


def quantize_file(source: Path, target: Path) -> None:
    """Write `source` with int8 weights to `target`, its constants folded
    first (`fold_constants`)."""
    import logging

    _import_ort()  # onnxruntime, quietly and without its telemetry
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger("root").setLevel(logging.ERROR)  # its pre-processing advice, every call
    folded = target.with_name(f".{target.stem}.folded.onnx")
    try:
        fold_constants(source, folded)
        quantize_dynamic(str(folded), str(target), weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(QUANTIZED_OPS), reduce_range=True,
                         per_channel=True, nodes_to_exclude=narrow_products(folded))
    finally:
        folded.unlink(missing_ok=True)


STATIC_METHOD = ("onnxruntime.quantization.quantize_static after its quant_pre_process: QDQ "
                 "format, weights QInt8 per output channel with reduce_range (7-bit), activations "
                 "QUInt8 per tensor, ranges by MinMax calibration; ReLUs kept as nodes "
                 "(QDQKeepRemovableActivations) so the file reads back as its float network")


def quantize_static_file(source: Path, target: Path, feeds: list[dict]) -> None:
    """Write `source` with int8 weights and activations to `target` (QDQ
    form, see STATIC_METHOD), activation ranges calibrated on `feeds` (each
    a dict of graph inputs)."""
    import logging

    _import_ort()
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, \
        QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.left = list(feeds)

        def get_next(self):
            return self.left.pop() if self.left else None

    root = logging.getLogger("root")
    level = root.level
    root.setLevel(logging.ERROR)  # its pre-processing advice
    prepared = target.with_name(f".{target.stem}.prepared.onnx")
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(target), Feeds(), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"QDQKeepRemovableActivations": True})
    finally:
        prepared.unlink(missing_ok=True)
        root.setLevel(level)


def fold_constants(source: Path, target: Path) -> None:
    """Write `source` with ONNX Runtime's basic (hardware-independent) graph
    optimizations applied: constant folding, mostly. The attention networks
    split and transpose a weight inside the graph (project_in), which hid
    it from quantization: it stayed a float product of the 518 drum inputs,
    the slowest node of a batch-64 step, and half the int8 file."""
    import onnx

    onnxruntime = _import_ort()
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    # ORT saves an import of every opset it knows; keep those the graph uses.
    model = onnx.load(str(target))
    used = {node.domain or "" for node in model.graph.node} | {""}
    kept = [opset for opset in model.opset_import if (opset.domain or "") in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, str(target))


def narrow_products(path: Path, columns: int = 4) -> list[str]:
    """MatMul and Gemm nodes whose weight has at most `columns` output
    columns (attention_rnn's score vector): quantizing their input on the fly
    costs more than the product (measured: the slowest node of a batch-64
    step)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    weights = {init.name: numpy_helper.to_array(init).shape for init in model.graph.initializer}

    def outputs(node, name: str) -> int:
        transposed = node.op_type == "Gemm" and any(
            a.name == "transB" and helper.get_attribute_value(a) for a in node.attribute)
        return weights[name][0 if transposed else 1]

    return [node.name for node in model.graph.node if node.op_type in ("MatMul", "Gemm")
            and any(len(weights.get(name, ())) == 2 and outputs(node, name) <= columns
                    for name in node.input[:2])]


def spec_and_model(path: Path):
    """The task spec and a fresh EventRnn (CPU) of the event RNN at path."""
    from mtools.models.registry import resolve_model
    from mtools.models.sequence import EventRnn
    from mtools.training.tasks import find_spec

    ref = resolve_model(str(path))
    # Not load_event_rnn: it keeps one session per path, and this file changes.
    return find_spec(ref.card.name, ref.card.config or None), EventRnn.from_ref(ref, device="cpu")


def measure(path: Path, data: list[str], split: str = "valid") -> dict:
    """The figures `mtools eval` prints for an event RNN on data's split."""
    from mtools.training.evaluate import evaluate_sources

    spec, model = spec_and_model(path)
    return evaluate_sources(model, spec, data, split)


def probability_error(float_path: Path, int8_path: Path, data: list[str],
                      pieces: int = 8) -> float:
    """Largest |int8 − float32| next-event probability (any class, any
    teacher-forced step) over the first `pieces` validation pieces of data."""
    from mtools.models.sampling import log_softmax
    from mtools.training.tasks import load_examples

    spec, reference = spec_and_model(float_path)
    _, quantized = spec_and_model(int8_path)
    worst = 0.0
    for example in load_examples(spec, data, "valid")[:pieces]:
        inputs = reference.encode(example.ids[None], 0, example.control)
        want = np.exp(log_softmax(reference.run(inputs, reference.zero_state(1))[0]))
        got = np.exp(log_softmax(quantized.run(inputs, quantized.zero_state(1))[0]))
        worst = max(worst, float(abs(got - want).max()))
    return worst


def quantize_model(path: Path, data: list[str] | None = None) -> dict:
    """Replace an event RNN's float weights by int8 ones, card included;
    returns the card's new metrics. The float figures, parity check and
    n-gram baseline move under metrics.float32; the baseline is fitted again
    on the same data."""
    from mtools.errors import UsageError
    from mtools.training.evaluate import ngram_baseline
    from mtools.training.tasks import load_examples

    path = Path(path)
    card = tool_card(path)
    if card.get("quantization"):
        raise UsageError(f"{path} is already quantized")
    if card.get("name") == "coconet":
        from mtools.training.coconet import quantize_coconet

        return quantize_coconet(path, card, data)
    if card.get("task") != "continue":
        raise UsageError(f"{path}: only event RNNs (the continue models) and Coconet are "
                         "quantized; MusicVAE lost up to 3% on its figures in int8 (measured "
                         "2026-12-02)")
    data = card_data(path, card, data)
    before = measure(path, data)  # now, on the same data as the int8 figures
    spec, _ = spec_and_model(path)
    baseline = ngram_baseline(spec, load_examples(spec, data, "train"),
                              load_examples(spec, data, "valid"))

    def describe(temporary: Path) -> None:
        card["metrics"] = measured_again(
            card["metrics"], before, {**measure(temporary, data), **baseline},
            "python -m mtools.training.quantize (int8 and float32 figures and the n-gram, "
            "same data)", dropped=("ngram_order", "ngram_nll_per_step"))
        card["quantization"] = {**rewrite_note(path, METHOD, "quantize", data),
                                "max_abs_probability_error_vs_float32":
                                    round(probability_error(path, temporary, data), 4)}

    replace_model(path, card, lambda temporary: quantize_file(path, temporary), describe,
                  tag="int8")
    return card["metrics"]


def card_data(path: Path, card: dict, data: list[str] | None) -> list[str]:
    """The sources a rewritten model is measured on: `data`, else its
    card's training datasets; UsageError when there are none."""
    from mtools.errors import UsageError

    data = list(data or card.get("training", {}).get("datasets") or [])
    if not data:
        raise UsageError(f"{path}: its card names no training datasets", hint="pass --data")
    return data


def measured_again(old: dict, before: dict, after: dict, measured_by: str,
                   dropped: tuple[str, ...] = ()) -> dict:
    """A card's metrics once its model is rewritten: the new file's figures
    (`after`) in place of the old ones (less `dropped`), the float32 file's
    (`before`, with its parity check) under "float32", and who measured
    them (the old reproduce command kept)."""
    kept = {k: v for k, v in old.items() if k not in ("parity_max_abs_error", *dropped)}
    return {**kept, **after,
            "float32": {**before, "parity_max_abs_error": old.get("parity_max_abs_error")},
            "measured_by": measured_again_by(old, measured_by)}


def measured_again_by(old: dict, measured_by: str) -> str:
    """`metrics.measured_by` once a rewritten file's figures replace `old`
    ones: who measured them, and the old reproduce command kept."""
    reproduce = old.get("measured_by", "").partition("reproduce: ")[2]
    return measured_by + (f"; reproduce: {reproduce}" if reproduce else "")


def rewrite_note(path: Path, method: str, module: str, data: list[str],
                 float32_size: bool = True) -> dict:
    """What a card says of how its file at `path` was rewritten by
    `python -m mtools.training.<module>` (with the float32 file's size,
    unless the rewrite keeps the weights as they are)."""
    from mtools.models.registry import file_sha256

    size = {"float32_size_bytes": path.stat().st_size} if float32_size else {}
    return {"method": method, "from_sha256": file_sha256(path), **size,
            "command": f"python -m mtools.training.{module} MODEL.onnx"
                       + "".join(f" --data {d}" for d in data)}


def replace_model(path: Path, card: dict, write, describe, tag: str) -> None:
    """Rewrite the model at `path` in place: `write(temporary)` makes the
    new file beside it, which gets a card (so it resolves as a model);
    `describe(temporary)` then updates `card` (measuring the new file); the
    card is written for the new file, and the file, then at once its card,
    replace the old ones. Nothing is replaced if any step fails."""
    from mtools.models.registry import write_card

    temporary = path.with_name(f".{path.stem}.{tag}.{os.getpid()}.onnx")
    temporary_card = temporary.with_suffix(".json")
    try:
        write(temporary)
        write_card(card, temporary)
        describe(temporary)
        write_card(card, temporary)  # validated, with the new file's size and sha256
        final = json.loads(temporary_card.read_text())
        final["onnx_file"] = path.name
        temporary_card.write_text(json.dumps(final, indent=2, sort_keys=True,
                                             ensure_ascii=False) + "\n")
        os.replace(temporary, path)  # the model, then at once its card
        os.replace(temporary_card, path.with_suffix(".json"))
    finally:
        temporary.unlink(missing_ok=True)
        temporary_card.unlink(missing_ok=True)


def tool_card(path: Path) -> dict:
    """The card beside the model a tool rewrites; InputMissingError when
    there is none."""
    from mtools.errors import InputMissingError

    card_path = Path(path).with_suffix(".json")
    if not card_path.is_file():
        raise InputMissingError(f"{path}: no model card beside it ({card_path.name})")
    return json.loads(card_path.read_text())


def run_tool(name: str, doc: str, example: str, rewrite) -> None:
    """The command line of a tool that rewrites model files in place,
    `python -m mtools.training.<name> MODEL.onnx ... [--data SOURCE ...]`
    (doc's first line is its help, `example` its example's arguments):
    `rewrite(path, data)` rewrites each model and returns the line to print.
    An MtoolsError (a model it cannot rewrite, say) or Ctrl-C is one line
    on stderr and the exit code the CLI gives it, not a traceback."""
    import sys

    from mtools.errors import EXIT_INTERRUPTED, MtoolsError

    parser = argparse.ArgumentParser(description=doc.split("\n")[0],
                                     epilog=f"example:\n  python -m mtools.training.{name} "
                                            f"{example}",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, metavar="MODEL.onnx")
    parser.add_argument("--data", action="append", metavar="SOURCE")
    args = parser.parse_args()
    try:
        for path in args.models:
            print(rewrite(path, args.data))
    except MtoolsError as error:
        print(f"mtools.training.{name}: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:  # replace_model removes its temporary files on the way out
        print(f"mtools.training.{name}: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


def rewritten_line(path: Path, metrics: dict, figures: tuple[str, ...]) -> str:
    """What a tool prints for a model it rewrote: the file's size and the
    first of `figures` its metrics hold, the float32 file's → the new one's."""
    figure = next((name for name in figures if name in metrics), figures[-1])
    return (f"{path}: {path.stat().st_size} bytes; {figure} "
            f"{metrics['float32'].get(figure)} -> {metrics.get(figure)}")


def main() -> None:
    def rewrite(path: Path, data: list[str] | None) -> str:
        return rewritten_line(path, quantize_model(path, data), ("nll_per_step", "frame_nll"))

    run_tool("quantize", __doc__, "~/.cache/mtools/export/melody_rnn-lookback_rnn.onnx", rewrite)


if __name__ == "__main__":
    main()
