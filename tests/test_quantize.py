"""Int8 event RNNs: the file shrinks, the card is measured again on it
with the float figures kept, and the model still plays."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from builders import write_random_tunes  # noqa: E402
from clirunner import run  # noqa: E402
from tiny_models import tiny_event_model  # noqa: E402
from mtools.errors import UsageError  # noqa: E402
from mtools.models.registry import resolve_model, write_card  # noqa: E402
from mtools.training.quantize import measure, quantize_model  # noqa: E402


def test_quantizing_shrinks_the_model_and_measures_its_card_again(tmp_path):
    tunes = tmp_path / "tunes"
    tunes.mkdir()
    write_random_tunes(tunes)
    path = tiny_event_model(tmp_path / "model", config="lookback_rnn", hidden=64)
    card = json.loads(path.with_suffix(".json").read_text())
    floats = measure(path, [str(tunes)])
    card.update(metrics={**floats, "split": "valid", "parity_max_abs_error": 1e-6})
    write_card(card, path)
    with pytest.raises(UsageError, match="--data"):  # no datasets on the card, none given
        quantize_model(path)
    card["training"] = {"datasets": [str(tunes)]}
    write_card(card, path)
    size, sha = path.stat().st_size, resolve_model(str(path)).card.sha256
    metrics = quantize_model(path)
    assert path.stat().st_size < size / 2
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        [path.name, path.with_suffix(".json").name])  # no temporary file left
    ref = resolve_model(str(path))  # the card matches the new file
    assert ref.card.metrics["float32"] == {**floats, "parity_max_abs_error": 1e-6}
    assert "parity_max_abs_error" not in ref.card.metrics and metrics["ngram_order"] >= 1
    quantization = ref.card.extra["quantization"]
    assert quantization["from_sha256"] == sha
    assert 0 < quantization["max_abs_probability_error_vs_float32"] < 0.2
    assert metrics["nll_per_step"] == measure(path, [str(tunes)])["nll_per_step"]
    assert metrics["nll_per_step"] == pytest.approx(floats["nll_per_step"], rel=0.02)
    assert quantization["float32_size_bytes"] == size
    played = run(["continue", "--model", path, "--primer", "60 _ 62 _ 64", "--bars", "1",
                  "--seed", "1", "--to", "jsonl"])
    assert played.code == 0 and json.loads(played.stdout)["notes"]
    with pytest.raises(UsageError, match="already quantized"):
        quantize_model(path)


def test_attention_weights_behind_a_transpose_are_quantized_too(tmp_path):
    import onnx
    from onnx import numpy_helper

    from mtools.training.quantize import quantize_file

    path = tiny_event_model(tmp_path / "model", config="attention_rnn", hidden=64)
    target = tmp_path / "int8.onnx"
    quantize_file(path, target)
    graph = onnx.load(str(target)).graph
    shapes = {init.name: numpy_helper.to_array(init).shape for init in graph.initializer}
    constant = set(shapes)  # tensors computed from weights alone
    for node in graph.node:
        if all(name in constant for name in node.input if name):
            constant.update(node.output)
    float_products = [node.name for node in graph.node if node.op_type in ("MatMul", "Gemm")
                      and any(name in constant and shapes.get(name, (0, 99))[-1] > 4
                              for name in node.input)]
    assert float_products == []  # project_in's input half was one before folding
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.onnx", "model"]


@pytest.mark.parametrize("config", ["basic_rnn", "attention_rnn"])
def test_int8_weights_read_back_into_their_network(tmp_path, config):
    # `--init-from` on a shipped (int8) event RNN: the weights come back as
    # floats within one quantization step, proved by parity with the
    # dequantized graph.
    import torch

    from mtools.training.export import parity_error
    from mtools.training.nets import MODULES
    from mtools.training.quantize import quantize_file
    from mtools.training.tasks import find_spec
    from mtools.training.warm_start import load_exported

    path = tiny_event_model(tmp_path / "float", config=config, hidden=32)
    int8 = tmp_path / path.name
    quantize_file(path, int8)
    spec = find_spec("melody_rnn", config)
    extra = {"attn_length": 5} if spec.module == "attention_lstm" else {}

    def network():
        return MODULES[spec.module](spec.encoding.input_size, spec.encoding.num_classes,
                                    hidden=32, layers=1, dropout=0.0, **extra)

    original, loaded = network(), network()
    load_exported(original, path, parity_error)
    assert load_exported(loaded, int8, parity_error) < 1e-4
    for name, weight in original.state_dict().items():
        step = float(weight.abs().max()) / 63 + 1e-6  # 7-bit weights: 63 steps a side
        assert torch.allclose(loaded.state_dict()[name], weight, atol=step), name


def test_a_run_can_start_from_an_int8_export(tmp_path):
    tunes = tmp_path / "tunes"
    tunes.mkdir()
    write_random_tunes(tunes)
    path = tiny_event_model(tmp_path / "float", config="basic_rnn", hidden=16)
    from mtools.training.quantize import quantize_file

    int8 = tmp_path / "int8" / path.name
    int8.parent.mkdir()
    quantize_file(path, int8)
    int8.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    common = ["train", "melody_rnn", "--config", "basic_rnn", "--data", tunes, "--hidden", "16",
              "--layers", "1", "--batch-size", "4", "--quiet", "--out", tmp_path / "out",
              "--run-dir", tmp_path / "run"]
    started = run([*common, "--max-steps", "0", "--init-from", int8])
    assert started.code == 0, started.stderr
    card = resolve_model(str(tmp_path / "out" / path.name)).card
    note = card.training["initialised_from"]
    assert note["file"] == path.name and "dequantized" in note and note["parity_max_abs_error"] < 1e-4
    assert f"--init-from {int8}" in card.training["command"]
