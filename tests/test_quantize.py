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
    path = tiny_event_model(tmp_path / "model", hidden=64)
    card = json.loads(path.with_suffix(".json").read_text())
    floats = measure(path, [str(tunes)])
    card.update(metrics={**floats, "split": "valid"}, training={"datasets": [str(tunes)]})
    write_card(card, path)
    size = path.stat().st_size
    metrics = quantize_model(path)
    assert path.stat().st_size < size / 2
    ref = resolve_model(str(path))  # the card matches the new file
    assert ref.card.metrics["float32"] == floats
    assert metrics["nll_per_step"] == measure(path, [str(tunes)])["nll_per_step"]
    assert metrics["nll_per_step"] == pytest.approx(floats["nll_per_step"], rel=0.02)
    assert ref.card.extra["quantization"]["float32_size_bytes"] == size
    played = run(["continue", "--model", path, "--primer", "60 _ 62 _ 64", "--bars", "1",
                  "--seed", "1", "--to", "jsonl"])
    assert played.code == 0 and json.loads(played.stdout)["notes"]
    with pytest.raises(UsageError, match="already quantized"):
        quantize_model(path)
