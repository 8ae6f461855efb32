"""Float16 MusicVAE and transcription files: the file shrinks, computes what the float32
one does up to float16 rounding of its weights, the card is measured again
with the float32 figures kept, and a run can start from it."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from builders import melody, write_random_tunes  # noqa: E402
from clirunner import run  # noqa: E402
from tiny_models import tiny_event_model, tiny_music_vae, tiny_transcriber  # noqa: E402
from mtools.errors import UsageError  # noqa: E402
from mtools.io.jsonl import scores_to_jsonl  # noqa: E402
from mtools.models.music_vae import MusicVae  # noqa: E402
from mtools.models.registry import resolve_model, write_card  # noqa: E402
from mtools.training.half import halve_model, halved, is_halved, measure, widened  # noqa: E402


def float32_weights(path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
            if t.data_type == onnx.TensorProto.FLOAT}


@pytest.fixture(scope="module")
def tunes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("half_tunes")
    write_random_tunes(folder)
    return folder


def test_halving_shrinks_the_model_and_measures_its_card_again(tunes, tmp_path):
    path = tiny_music_vae(tmp_path / "model", z_size=64)
    card = json.loads(path.with_suffix(".json").read_text())
    floats = measure(path, [str(tunes)])
    card.update(metrics={**floats, "split": "valid", "parity_max_abs_error": 1e-6})
    write_card(card, path)
    with pytest.raises(UsageError, match="--data"):  # no datasets on the card, none given
        halve_model(path)
    card["training"] = {"datasets": [str(tunes)]}
    write_card(card, path)
    size, sha = path.stat().st_size, resolve_model(str(path)).card.sha256
    before = MusicVae.from_ref(resolve_model(str(path))).encode(np.arange(32)[None] % 20)[0]

    large = sum(4 * t.size for t in float32_weights(path).values() if t.size >= 1024)
    metrics = halve_model(path)

    assert large > size / 2 and path.stat().st_size < size - 0.45 * large
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        [path.name, path.with_suffix(".json").name])  # no temporary file left
    ref = resolve_model(str(path))  # the card matches the new file
    assert ref.card.metrics["float32"] == {**floats, "parity_max_abs_error": 1e-6}
    assert "parity_max_abs_error" not in ref.card.metrics
    assert ref.card.extra["storage"]["from_sha256"] == sha
    assert ref.card.extra["storage"]["float32_size_bytes"] == size
    assert metrics["accuracy_teacher_forced"] == measure(path, [str(tunes)])[
        "accuracy_teacher_forced"]
    assert metrics["kl_per_window"] == pytest.approx(floats["kl_per_window"], rel=0.01)
    after = MusicVae.from_ref(ref).encode(np.arange(32)[None] % 20)[0]
    assert np.abs(after - before).max() < 1e-2 and not np.array_equal(after, before)
    both = scores_to_jsonl([melody("60 _ 62 _ 64 _ 65 _ 67 _ 69 _ 71 _ 72 _"),
                            melody("72 _ 71 _ 69 _ 67 _ 65 _ 64 _ 62 _ 60 _")]).encode()
    played = run(["interpolate", "--model", path, "--steps", "3", "--to", "jsonl"], both)
    assert played.code == 0, played.stderr
    assert len(played.stdout.decode().splitlines()) == 3
    with pytest.raises(UsageError, match="fewer bits"):
        halve_model(path)


def test_only_music_vae_and_transcription_files_are_halved(tmp_path):
    path = tiny_event_model(tmp_path / "model", config="basic_rnn", hidden=64)
    with pytest.raises(UsageError, match="only MusicVAE and transcription models"):
        halve_model(path, ["anything"])


def test_a_transcription_model_is_halved_and_measured_on_its_own_corpus(tmp_path, monkeypatch):
    from mtools.models.onsets_frames import OnsetsFrames
    from mtools.training import half

    path = tiny_transcriber(tmp_path / "model")
    card = json.loads(path.with_suffix(".json").read_text())
    write_card({**card, "metrics": {"note_f1": 0.5, "parity_max_abs_error": 1e-6}}, path)
    mel = np.random.default_rng(0).standard_normal((1, 40, 229)).astype(np.float32)
    before = OnsetsFrames.from_ref(resolve_model(str(path))).run(mel)
    seen = []

    def figures(model_path, data, split="valid"):  # rendering ASAP is the benchmark's work
        seen.append((resolve_model(str(model_path)).card.extra.get("storage"), data, split))
        return {"note_f1": 0.5 - 0.1 * len(seen)}

    monkeypatch.setattr(half, "measure", figures)
    with pytest.raises(UsageError, match="--data does not apply"):
        halve_model(path, ["elsewhere"])
    size = path.stat().st_size
    metrics = halve_model(path)
    assert path.stat().st_size < size
    assert [data for _, data, _ in seen] == [["asap"], ["asap"]]
    assert metrics["note_f1"] == pytest.approx(0.3) and metrics["float32"]["note_f1"] == 0.4
    ref = resolve_model(str(path))
    assert ref.card.extra["storage"]["command"] == "python -m mtools.training.half MODEL.onnx"
    after = OnsetsFrames.from_ref(ref).run(mel)
    for name, values in before.items():
        assert np.abs(after[name] - values).max() < 1e-2, name


def test_widening_gives_back_float32_weights_rounded_to_float16(tmp_path):
    import onnx
    from onnx import TensorProto, numpy_helper

    path = tiny_music_vae(tmp_path / "model", z_size=64)
    original = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    small = halved(onnx.load(str(path)))
    assert is_halved(small.graph)
    kinds = {t.name: t.data_type for t in small.graph.initializer}
    assert TensorProto.FLOAT16 in kinds.values() and TensorProto.FLOAT in kinds.values()
    back = widened(small)
    assert not is_halved(back.graph)
    assert not any(node.op_type == "Cast" and node.input[0].endswith(".float16")
                   for node in back.graph.node)
    again = {t.name: numpy_helper.to_array(t) for t in back.graph.initializer}
    assert sorted(again) == sorted(original)
    for name, values in original.items():
        assert again[name].dtype == values.dtype
        assert np.array_equal(again[name], values.astype(np.float16).astype(values.dtype)
                              if values.size >= 1024 and values.dtype == np.float32 else values)


@pytest.mark.parametrize("config", ["drums_2bar", "mel_16bar", "groovae"])
def test_every_kind_of_export_widens_back_to_itself(tmp_path, config):
    import onnx
    from onnx import numpy_helper

    path = tiny_music_vae(tmp_path / "model", config, z_size=64)
    original = onnx.load(str(path))
    back = widened(halved(onnx.load(str(path))))
    assert [n.op_type for n in back.graph.node] == [n.op_type for n in original.graph.node]
    widths = {t.name: numpy_helper.to_array(t).shape for t in back.graph.initializer}
    assert widths == {t.name: numpy_helper.to_array(t).shape
                      for t in original.graph.initializer}


def test_a_failed_measurement_leaves_the_model_as_it_was(tunes, tmp_path, monkeypatch):
    from mtools.training import half

    path = tiny_music_vae(tmp_path / "model", z_size=64)
    before = path.read_bytes(), path.with_suffix(".json").read_bytes()
    calls = []

    def measure_once(*args):  # the float32 file measures; the halved one fails
        calls.append(args)
        if len(calls) > 1:
            raise RuntimeError("measuring failed")
        return {"windows": 1}

    monkeypatch.setattr(half, "measure", measure_once)
    with pytest.raises(RuntimeError, match="measuring failed"):
        halve_model(path, [str(tunes)])
    assert (path.read_bytes(), path.with_suffix(".json").read_bytes()) == before
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        [path.name, path.with_suffix(".json").name])


def test_a_run_can_start_from_a_float16_export(tunes, tmp_path):
    common = ["train", "music_vae", "--config", "mel_2bar", "--data", tunes, "--hidden", "32",
              "--batch-size", "4", "--quiet"]
    assert run([*common, "--out", tmp_path / "first", "--run-dir", tmp_path / "r1",
                "--max-steps", "2"]).code == 0
    export = tmp_path / "first" / "music_vae-mel_2bar.onnx"
    halve_model(export)
    started = run([*common, "--out", tmp_path / "second", "--run-dir", tmp_path / "r2",
                   "--max-steps", "0", "--init-from", export])
    assert started.code == 0, started.stderr
    card = resolve_model(str(tmp_path / "second" / "music_vae-mel_2bar.json")).card
    shipped = resolve_model(str(export)).card
    assert card.training["initialised_from"]["file"] == export.name
    for key in ("accuracy_teacher_forced", "accuracy_sampled", "kl_per_window"):
        assert card.metrics[key] == pytest.approx(shipped.metrics[key], abs=1e-4)
