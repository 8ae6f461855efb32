"""mtools.models.registry: cards, resolving names and paths, checksums."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from tiny_onnx import save_tiny_model, tiny_card, tiny_rnn_model, tiny_rnn_reference, tiny_weights

from mtools.errors import ModelNotFoundError, UsageError
from mtools.models import registry
from mtools.models.registry import (
    ModelCard,
    list_models,
    model_stem,
    parse_spec,
    resolve_model,
    write_card,
)
from mtools.training.tasks import DEFAULT_CONFIGS


@pytest.fixture
def model_path(tmp_path, monkeypatch):
    """A registry folder on $MTOOLS_MODEL_PATH; returns its path."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv(registry.MODEL_PATH_ENV, str(folder))
    return folder


def test_spec_and_stem_mapping():
    assert parse_spec("melody_rnn") == ("melody_rnn", "")
    assert parse_spec("melody_rnn:attention_rnn") == ("melody_rnn", "attention_rnn")
    assert model_stem("melody_rnn", "attention_rnn") == "melody_rnn-attention_rnn"
    assert model_stem("coconet") == "coconet"
    for bad in ("Melody", "a:b:c", "a-b", ""):
        with pytest.raises(UsageError):
            parse_spec(bad)


def test_write_card_fills_checksum_and_round_trips(tmp_path):
    onnx_path = tmp_path / "mine.onnx"
    onnx_path.write_bytes(tiny_rnn_model(tiny_weights()).SerializeToString())
    card_dict = tiny_card(metrics={"nll": np.float32(1.5)}, calibrated_on="2026-11")
    card_path = write_card(card_dict, onnx_path)
    assert card_path == tmp_path / "mine.json"
    text = card_path.read_text()
    assert text.endswith("}\n") and text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    card = ModelCard.load(card_path)
    assert card.sha256 == registry.file_sha256(onnx_path)
    assert card.size_bytes == onnx_path.stat().st_size
    assert card.onnx_file == "mine.onnx" and card.metrics == {"nll": 1.5}
    assert card.inputs == ("x", "state_h") and card.default is False
    assert card.extra == {"calibrated_on": "2026-11"}
    assert card.to_dict() == json.loads(text)
    assert not list(tmp_path.glob(".*.tmp"))


def test_card_with_missing_or_bad_key_is_named(tmp_path):
    onnx_path = save_tiny_model(tmp_path, stem="broken")
    card_path = onnx_path.with_suffix(".json")
    data = json.loads(card_path.read_text())
    del data["task"]
    card_path.write_text(json.dumps(data))
    with pytest.raises(ModelNotFoundError, match=r"broken\.json.*'task'"):
        ModelCard.load(card_path)
    data["task"], data["inputs"] = "continue", "x"
    card_path.write_text(json.dumps(data))
    with pytest.raises(ModelNotFoundError, match="'inputs'"):
        ModelCard.load(card_path)
    card_path.write_text("{not json")
    with pytest.raises(ModelNotFoundError, match="not valid JSON"):
        ModelCard.load(card_path)


def test_resolve_by_folder_card_and_onnx_path(tmp_path):
    onnx_path = save_tiny_model(tmp_path / "mine", "tiny_rnn", stem="my_model")
    (tmp_path / "mine" / "training_config.json").write_text("{}")  # not a card
    for spec in (tmp_path / "mine", onnx_path.with_suffix(".json"), onnx_path):
        ref = resolve_model(str(spec))
        assert ref.onnx_path == onnx_path and ref.card.name == "tiny_rnn"


def test_path_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no model at"):
        resolve_model(str(tmp_path / "absent.onnx"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no model in"):
        resolve_model(str(tmp_path / "empty"))
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="no model card lone.json"):
        resolve_model(str(lone))
    save_tiny_model(tmp_path / "two", stem="a")
    save_tiny_model(tmp_path / "two", stem="b")
    with pytest.raises(UsageError, match="several models"):
        resolve_model(str(tmp_path / "two"))


def test_resolve_by_name_on_model_path(model_path):
    onnx_path = save_tiny_model(model_path, "tiny_rnn")
    ref = resolve_model("tiny_rnn", task="continue")
    assert ref.onnx_path == onnx_path and ref.card.spec == "tiny_rnn"


def test_family_default_and_configs(model_path):
    save_tiny_model(model_path, "tiny_rnn", "basic")
    save_tiny_model(model_path, "tiny_rnn", "attention", default=True)
    assert resolve_model("tiny_rnn").card.config == "attention"
    assert resolve_model("tiny_rnn:basic").onnx_path.name == "tiny_rnn-basic.onnx"
    with pytest.raises(ModelNotFoundError, match="no config 'lookback'; it has tiny_rnn:attention"):
        resolve_model("tiny_rnn:lookback")


def test_family_without_default_must_be_chosen(model_path):
    save_tiny_model(model_path, "tiny_rnn", "basic")
    assert resolve_model("tiny_rnn").card.config == "basic"  # the only one
    save_tiny_model(model_path, "tiny_rnn", "lookback")
    with pytest.raises(UsageError, match="several configs"):
        resolve_model("tiny_rnn")


def test_earlier_model_path_folder_wins(tmp_path, monkeypatch):
    first = save_tiny_model(tmp_path / "first", "tiny_rnn", description="first")
    save_tiny_model(tmp_path / "second", "tiny_rnn", description="second")
    save_tiny_model(tmp_path / "second", "other_rnn")
    folders = os.pathsep.join(str(tmp_path / name) for name in ("nowhere", "first", "second"))
    monkeypatch.setenv(registry.MODEL_PATH_ENV, folders)
    assert resolve_model("tiny_rnn").onnx_path == first
    assert resolve_model("other_rnn").card.name == "other_rnn"
    listed = [card.description for card in list_models() if card.name == "tiny_rnn"]
    assert listed == ["first"]


def test_card_must_match_its_file_name_in_a_registry_folder(model_path):
    save_tiny_model(model_path, "tiny_rnn", stem="other_rnn")
    with pytest.raises(ModelNotFoundError, match="is for tiny_rnn, but its file name says other_rnn"):
        resolve_model("other_rnn")


def test_task_mismatch_is_a_usage_error(model_path):
    save_tiny_model(model_path, "tiny_rnn", other_tasks=["harmonize"])
    assert resolve_model("tiny_rnn", task="harmonize").card.tasks == ("continue", "harmonize")
    with pytest.raises(UsageError, match="model tiny_rnn does `continue`, `harmonize`, not `transcribe`"):
        resolve_model("tiny_rnn", task="transcribe")


def test_unknown_name_suggests_close_ones(model_path):
    save_tiny_model(model_path, "tiny_rnn")
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("tiny_rn")
    assert "did you mean tiny_rnn" in str(caught.value)
    assert "mtools models" in str(caught.value)
    with pytest.raises(ModelNotFoundError, match="unknown model 'Tiny-RNN'; did you mean tiny_rnn"):
        resolve_model("Tiny-RNN")


def test_a_trainable_family_that_is_not_bundled_says_how_to_train_it(model_path, monkeypatch):
    monkeypatch.setattr("mtools.models.registry.BUNDLED_DIR", model_path)
    save_tiny_model(model_path, "tiny_rnn")
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("onsets_frames")
    assert "not bundled" in str(caught.value)
    assert "mtools train onsets_frames --out DIR" in str(caught.value)


def test_list_models_sees_model_path_sorted_by_task(model_path):
    save_tiny_model(model_path, "zeta_rnn", task="continue")
    save_tiny_model(model_path, "alpha_net", task="transcribe")
    save_tiny_model(model_path, "beta_rnn", task="continue")
    (model_path / "notes.json").write_text("[]")  # no notes.onnx: not a card
    mine = [card.spec for card in list_models() if card.card_path.parent == model_path]
    assert mine == ["beta_rnn", "zeta_rnn", "alpha_net"]
    tasks = [card.task for card in list_models()]
    assert tasks == sorted(tasks)


def test_session_from_ref_matches_reference(model_path):
    save_tiny_model(model_path, "tiny_rnn", seed=5)
    session = resolve_model("tiny_rnn").load_session(device="cpu")
    x = np.ones((2, 4), np.float32)
    state_h = np.full((2, 8), 0.1, np.float32)
    logits, _ = tiny_rnn_reference(tiny_weights(seed=5), x, state_h)
    result = session.run({"x": x, "state_h": state_h})
    np.testing.assert_allclose(result["logits"], logits, atol=1e-5, rtol=1e-5)


def test_flipped_byte_fails_the_checksum(model_path):
    onnx_path = save_tiny_model(model_path, "tiny_rnn")
    ref = resolve_model("tiny_rnn")
    ref.verify()
    data = bytearray(onnx_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx_path.write_bytes(bytes(data))
    with pytest.raises(ModelNotFoundError, match="corrupt or was changed"):
        ref.load_session(device="cpu")


def test_truncated_file_and_lfs_pointer_are_reported(model_path):
    onnx_path = save_tiny_model(model_path, "tiny_rnn")
    onnx_path.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:0\n")
    with pytest.raises(ModelNotFoundError, match="git lfs pull"):
        resolve_model("tiny_rnn").verify()
    onnx_path.unlink()
    with pytest.raises(ModelNotFoundError, match="not beside it"):
        resolve_model("tiny_rnn")


def test_card_graph_names_are_checked_at_load(model_path):
    save_tiny_model(model_path, "tiny_rnn", inputs=["x", "state_c"])
    with pytest.raises(ModelNotFoundError, match="missing inputs state_c; unexpected inputs state_h"):
        resolve_model("tiny_rnn").load_session(device="cpu")


def test_bundled_cards_are_valid(monkeypatch):
    # Whatever is bundled must list and resolve (the folder may be empty).
    monkeypatch.delenv(registry.MODEL_PATH_ENV, raising=False)
    for card in list_models():
        if card.card_path.parent == registry.BUNDLED_DIR:
            assert resolve_model(card.spec).card == card


def test_every_bundled_family_has_one_default(monkeypatch):
    # `--model drums_rnn` must name a model: a re-exported card once lost its flag.
    monkeypatch.delenv(registry.MODEL_PATH_ENV, raising=False)
    families: dict[str, list] = {}
    for card in list_models():
        if card.card_path.parent == registry.BUNDLED_DIR:
            families.setdefault(card.name, []).append(card)
    for name, cards in families.items():
        defaults = [card.spec for card in cards if card.default]
        assert len(cards) == 1 or len(defaults) == 1, (name, defaults)
        assert resolve_model(name).card.name == name
        if name in DEFAULT_CONFIGS:  # `mtools train FAMILY` trains the bundled default
            assert resolve_model(name).card.config == DEFAULT_CONFIGS[name]
