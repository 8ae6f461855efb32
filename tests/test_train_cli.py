"""`mtools train` and `mtools eval` end to end on a tiny folder of tunes:
the exported card's figures are reproduced by `mtools eval`."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from builders import write_random_tunes  # noqa: E402
from clirunner import run  # noqa: E402
from mtools.models.registry import resolve_model  # noqa: E402


@pytest.fixture(scope="module")
def tunes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tunes")
    write_random_tunes(folder)
    return folder


def test_train_exports_a_card_that_eval_reproduces(tunes, tmp_path):
    out = tmp_path / "models"
    trained = run(["train", "melody_rnn", "--config", "basic_rnn", "--data", tunes, "--out", out,
                   "--run-dir", tmp_path / "run", "--max-steps", "3", "--hidden", "8",
                   "--layers", "1", "--batch-size", "4", "--quiet"])
    assert trained.code == 0, trained.stderr
    card = resolve_model(str(out / "melody_rnn-basic_rnn.json")).card
    metrics = card.metrics
    assert card.training["steps"] == 3 and card.training["valid_pieces"] > 0
    assert card.training["stopped"] == "max steps"
    assert metrics["parity_max_abs_error"] < 1e-4 and 0 <= metrics["accuracy"] <= 1
    assert metrics["ngram_order"] >= 1 and metrics["ngram_nll_per_step"] > 0
    evaluated = run(["eval", "--model", out / "melody_rnn-basic_rnn.onnx", tunes, "--split",
                     "valid", "--json"])
    assert evaluated.code == 0, evaluated.stderr
    figures = json.loads(evaluated.stdout)
    assert figures["nll_per_step"] == metrics["nll_per_step"]
    assert figures["accuracy"] == metrics["accuracy"]
    resumed = run(["train", "melody_rnn", "--config", "basic_rnn", "--data", tunes, "--out", out,
                   "--run-dir", tmp_path / "run", "--max-steps", "5", "--hidden", "8",
                   "--layers", "1", "--batch-size", "4", "--quiet"])
    assert resumed.code == 0 and resolve_model(str(out)).card.training["steps"] == 5
    import torch

    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert "optimizer" in last and "optimizer" not in best  # best.pt: the weights to export
    assert last["train_config"]["device"] == "cpu"
    assert all(t.device.type == "cpu" for t in best["state_dict"].values())


def test_a_device_torch_cannot_use_is_a_usage_error(tunes, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    common = ["train", "melody_rnn", "--data", tunes, "--out", tmp_path, "--max-steps", "1"]
    assert run([*common, "--device", "cuda"]).code == 2
    assert run([*common, "--device", "cuda:1"]).code == 2
    for wrong in ("tpu", "cudax", "meta"):
        refused = run([*common, "--device", wrong])
        assert refused.code == 2 and "--device" in refused.stderr


def test_every_training_loss_runs_where_its_model_is():
    """Each trainer's loss on the meta device (no data, shapes only): a tensor
    made on the CPU inside a loss or forward would fail here as on CUDA."""
    import numpy as np
    import torch

    from mtools.models.music_vae import VaeSpace
    from mtools.training.coconet import coconet_loss
    from mtools.training.loop import masked_loss, to_device
    from mtools.training.music_vae import VaeLoss
    from mtools.training.nets import AttentionLSTM, CoconetNet, EventLSTM, MusicVAENet, \
        OnsetsFramesNet
    from mtools.training.transcription import transcription_loss

    meta = torch.device("meta")
    space = VaeSpace("trio", 32)
    ids = space.pack(np.zeros((2, 32, 3), np.int64))
    vae_batch = tuple(torch.from_numpy(x) for x in (space.features(ids), space.features(ids),
                                                      space.parts(ids)))
    cases = [
        (EventLSTM(6, 5, hidden=4, layers=2), masked_loss,
         (torch.zeros(2, 7, 6), torch.zeros(2, 7, dtype=torch.int64), torch.ones(2, 7))),
        (AttentionLSTM(6, 5, hidden=4, layers=2, attn_length=3), masked_loss,
         (torch.zeros(2, 7, 6), torch.zeros(2, 7, dtype=torch.int64), torch.ones(2, 7))),
        (MusicVAENet(space.input_size, space.num_classes, z_size=4, enc_hidden=4, dec_hidden=4,
                     bars=2, conductor_hidden=4), VaeLoss(0.1, 1.0, segments=space.segments),
         vae_batch),
        (OnsetsFramesNet(channels=(2, 2), acoustic=4, lstm=2), transcription_loss,
         (torch.zeros(2, 9, 229),) + (torch.zeros(2, 9, 88),) * 4),
    ]
    for model, loss_fn, batch in cases:
        model = model.to(meta).train()
        loss, _ = loss_fn(model, to_device(batch, meta))
        loss.backward()
        assert loss.device.type == "meta"
    coconet = CoconetNet(layers=2, filters=4).to(meta)
    chorale = torch.zeros(2, 8, 46, 4)
    loss, _ = coconet_loss(coconet, to_device((chorale, chorale, torch.zeros(
        2, 8, 4, dtype=torch.int64), torch.ones(2, 8, 4, dtype=torch.bool)), meta))
    assert loss.device.type == "meta"


def test_to_device_moves_every_tensor_of_nested_batches():
    import torch

    from mtools.training.loop import to_device

    batch = ({"a": torch.zeros(2)}, [torch.ones(1), 3], torch.zeros(1, dtype=torch.int64))
    moved = to_device(batch, torch.device("meta"))
    assert moved[0]["a"].device.type == "meta" and moved[1][0].device.type == "meta"
    assert moved[1][1] == 3 and isinstance(moved, tuple) and moved[2].dtype == torch.int64


def test_unknown_config_is_a_usage_error(tunes, tmp_path):
    out = run(["train", "melody_rnn", "--config", "nope", "--data", tunes, "--out", tmp_path])
    assert out.code == 2 and "melody_rnn:basic_rnn" in out.stderr


def test_out_that_cannot_be_a_folder_and_hours_elsewhere_are_refused_before_parsing(tunes,
                                                                                     tmp_path):
    (tmp_path / "afile").write_bytes(b"")
    out = run(["train", "melody_rnn", "--data", tunes, "--out", tmp_path / "afile" / "sub"])
    assert out.code == 2 and "is a file, not a folder" in out.stderr and "parsing" not in out.stderr
    out = run(["train", "melody_rnn", "--data", tunes, "--hours", "1", "--out", tmp_path])
    assert out.code == 2 and "--hours does not apply" in out.stderr


def test_training_names_the_files_it_leaves_out_and_empty_data_is_a_data_error(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.mid").write_bytes(b"hello")
    args = ["train", "melody_rnn", "--config", "basic_rnn", "--data", tmp_path / "bad",
            "--out", tmp_path / "out", "--run-dir", tmp_path / "run", "--max-steps", "1"]
    done = run(args)
    assert done.code == 65 and "0 training and 0 validation pieces" in done.stderr
    assert f"warning: left out {tmp_path / 'bad'}/x.mid: not a format" in done.stderr
    assert "parsing x.mid" not in done.stderr  # the file count is for a terminal only
    assert not (tmp_path / "out").exists()


def test_dropout_is_a_training_option_the_card_keeps(tunes, tmp_path):
    trained = run(["train", "melody_rnn", "--config", "basic_rnn", "--data", tunes, "--out",
                   tmp_path / "out", "--run-dir", tmp_path / "run", "--max-steps", "1",
                   "--hidden", "8", "--layers", "1", "--batch-size", "4", "--dropout", "0.2",
                   "--quiet"])
    assert trained.code == 0, trained.stderr
    card = resolve_model(str(tmp_path / "out" / "melody_rnn-basic_rnn.json")).card
    assert card.hyperparameters["dropout"] == 0.2 and "--dropout 0.2" in card.training["command"]
    assert run(["train", "coconet", "--dropout", "0.2", "--out", tmp_path]).code == 2


def test_learning_rate_starts_a_run_and_resets_a_resumed_ones_decay(tunes, tmp_path):
    import torch

    common = ["train", "melody_rnn", "--config", "basic_rnn", "--data", tunes, "--out",
              tmp_path / "out", "--run-dir", tmp_path / "run", "--hidden", "8", "--layers", "1",
              "--batch-size", "4", "--quiet"]
    card_path = str(tmp_path / "out" / "melody_rnn-basic_rnn.json")
    assert run([*common, "--max-steps", "1", "--learning-rate", "0.01"]).code == 0
    card = resolve_model(card_path).card
    assert "--learning-rate 0.01" in card.training["command"]
    assert card.training["loop"]["learning_rate"] == 0.01
    assert "learning_rate_changes" not in card.training  # the run started there
    assert run([*common, "--max-steps", "2"]).code == 0  # resumed without it: kept
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["optimizer"]["param_groups"][0]["lr"] == 0.01
    assert run([*common, "--max-steps", "3", "--learning-rate", "0.003"]).code == 0
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["optimizer"]["param_groups"][0]["lr"] == 0.003
    changes = resolve_model(card_path).card.training["learning_rate_changes"]
    assert changes == [{"step": 2, "learning_rate": 0.003, "was": 0.01}]
    card = resolve_model(card_path).card
    assert card.training["loop"]["learning_rate"] == 0.01  # still the rate the run started at
    assert "--learning-rate 0.01" in card.training["command"]
    last["optimizer"]["param_groups"][0]["lr"] = 0.0015  # as if the plateau decay had halved it
    torch.save(last, tmp_path / "run" / "last.pt")
    assert run([*common, "--max-steps", "4", "--learning-rate", "0.003"]).code == 0
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["optimizer"]["param_groups"][0]["lr"] == 0.0015  # the same command: decay kept
    assert len(resolve_model(card_path).card.training["learning_rate_changes"]) == 1
    exported = run([*common, "--export-only", "--learning-rate", "0.02"])
    assert exported.code == 0 and len(resolve_model(card_path).card.training[
        "learning_rate_changes"]) == 1  # an export trains nothing: no change
    (tmp_path / "run" / "last.pt").unlink()  # brought back with best.pt alone: a new optimizer
    assert run([*common, "--max-steps", "5"]).code == 0
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["optimizer"]["param_groups"][0]["lr"] == 0.003  # the rate last set, not 1e-3
    for bad in ("0", "-1", "nan"):
        refused = run([*common, "--learning-rate", bad])
        assert refused.code == 2 and "--learning-rate" in refused.stderr


def test_more_training_hours_keep_the_validation_part_at_one_hour(tmp_path, monkeypatch):
    # More validation hours would take the pieces the card's figures are measured on.
    pytest.importorskip("torch")
    import mtools.training.transcription as transcription

    asked = []
    monkeypatch.setattr(transcription, "train_transcriber",
                        lambda request, progress: asked.append(request.hours))
    for hours in ([], ["--hours", "36"], ["--hours", "0.5"]):
        result = run(["train", "onsets_frames", *hours, "--out", tmp_path / "m",
                      "--run-dir", tmp_path / "run", "--quiet"])
        assert result.code == 0, result.stderr
    assert asked == [(12.0, 1.0), (36.0, 1.0), (0.5, 1.0)]


def test_transcription_config_names_the_network_its_file_run_and_command(tmp_path):
    from mtools.errors import UsageError
    from mtools.training.render_sources import PIANO
    from mtools.training.transcription import TranscriptionRequest, default_run_dir, \
        network_of, reproduce_command

    wide = TranscriptionRequest(PIANO, tmp_path, tmp_path, config="wide")
    assert wide.file_stem == "onsets_frames-wide"
    assert default_run_dir(PIANO, "wide").name == "onsets_frames-wide"
    assert default_run_dir(PIANO).name == "onsets_frames"
    assert "--config wide" in reproduce_command(wide)
    assert "--hidden" not in reproduce_command(wide)  # 192 is wide's own LSTM width
    narrower = TranscriptionRequest(PIANO, tmp_path, tmp_path, network={"lstm": 64},
                                    config="wide")
    assert "--hidden 64" in reproduce_command(narrower)
    assert "--config" not in reproduce_command(TranscriptionRequest(PIANO, tmp_path, tmp_path))
    warm = TranscriptionRequest(PIANO, tmp_path, tmp_path, config="wide",
                                init_spec="onsets_frames:wide")
    assert "--config wide --init-from onsets_frames:wide" in reproduce_command(warm)
    assert network_of("wide", lstm=64) == {"channels": (32, 64), "acoustic": 768, "lstm": 64}
    assert network_of("") == {}
    with pytest.raises(UsageError, match="unknown transcription config 'huge'"):
        network_of("huge")
    refused = run(["train", "onsets_frames", "--config", "huge", "--out", tmp_path / "m",
                   "--run-dir", tmp_path / "run", "--quiet"])
    assert refused.code == 2 and "one of: '', wide" in refused.stderr
    assert not (tmp_path / "run").exists()
    refused = run(["train", "onsets_frames", "--dropout", "0.1", "--out", tmp_path / "m"])
    assert refused.code == 2 and "--dropout does not apply to onsets_frames" in refused.stderr
    missing = run(["train", "onsets_frames", "--init-from", tmp_path / "none.onnx",
                   "--out", tmp_path / "m", "--run-dir", tmp_path / "run"])
    assert missing.code != 0 and "none.onnx" in missing.stderr  # looked for, not refused
    assert not (tmp_path / "run").exists()


def test_an_export_stopped_before_its_card_is_measured_leaves_the_one_before(tmp_path):
    from mtools.training.export import whole_export

    onnx, card = tmp_path / "m.onnx", tmp_path / "m.json"
    onnx.write_bytes(b"old model")
    card.write_text("old card")
    with pytest.raises(KeyboardInterrupt), whole_export(onnx):  # Ctrl-C while measuring
        onnx.write_bytes(b"new model")
        card.write_text('{"metrics": {}}')
        raise KeyboardInterrupt
    assert onnx.read_bytes() == b"old model" and card.read_text() == "old card"
    with whole_export(onnx):
        onnx.write_bytes(b"new model")
        card.write_text("new card")
    assert onnx.read_bytes() == b"new model" and card.read_text() == "new card"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.onnx"]
    with pytest.raises(KeyboardInterrupt), whole_export(tmp_path / "fresh.onnx"):
        (tmp_path / "fresh.onnx").write_bytes(b"half")
        raise KeyboardInterrupt
    assert not (tmp_path / "fresh.onnx").exists()


def test_a_run_folder_is_not_resumed_on_other_data(tunes, tmp_path):
    from builders import write_random_tunes

    other = tmp_path / "other"
    other.mkdir()
    write_random_tunes(other)
    common = ["train", "melody_rnn", "--config", "basic_rnn", "--run-dir", tmp_path / "run",
              "--max-steps", "2", "--hidden", "8", "--layers", "1", "--batch-size", "4",
              "--quiet"]
    assert run([*common, "--data", tunes, "--out", tmp_path / "a"]).code == 0
    again = run([*common, "--data", f"{tunes}/", "--out", tmp_path / "a", "--max-steps", "3"])
    assert again.code == 0, again.stderr  # the same folder, written another way: resumed
    refused = run([*common, "--data", other, "--out", tmp_path / "b"])
    assert refused.code == 2 and "holds a run on" in refused.stderr and "--fresh" in refused.stderr
    assert not (tmp_path / "b").exists()
    assert run([*common, "--data", other, "--out", tmp_path / "b", "--fresh"]).code == 0


def test_an_unknown_family_names_every_trainable_one(tmp_path):
    done = run(["train", "foo_rnn", "--out", tmp_path])
    assert done.code == 2 and "no trainable model 'foo_rnn'" in done.stderr
    for family in ("coconet", "drums_rnn", "improv_rnn", "melody_rnn", "music_vae",
                   "onsets_frames", "onsets_frames_drums"):
        assert family in done.stderr
