"""Inference without torch: run by `make test-inference` in a venv that has
only `pip install '.[cpu]'` (no torch, no onnx, no test extras).

It proves that the installed package, not the source tree, serves the
inference path: ONNX Runtime sessions, the model registry, and the commands.
Each model family adds its command here once its model is bundled."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mtools
from mtools.models.registry import list_models, resolve_model

FIXTURE = Path(__file__).resolve().parent / "data" / "tiny_rnn"
BIN = Path(sys.executable).parent


def test_this_venv_has_no_torch_and_no_source_tree_on_the_path():
    assert importlib.util.find_spec("torch") is None
    assert importlib.util.find_spec("onnx") is None
    assert "site-packages" in mtools.__file__, mtools.__file__


def test_a_model_by_path_runs_and_matches_its_golden_outputs():
    golden = {k: np.asarray(v, dtype=np.float32)
              for k, v in json.loads((FIXTURE / "golden.json").read_text()).items()}
    session = resolve_model(str(FIXTURE)).load_session(device="cpu")
    out = session.run({"x": golden["x"], "state_h": golden["state_h"]})
    np.testing.assert_allclose(out["logits"], golden["logits"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["state_h_out"], golden["state_h_out"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("card", list_models(), ids=lambda card: card.spec)
def test_every_bundled_model_loads_with_its_checksum_and_graph_names(card):
    resolve_model(card.spec).load_session(device="cpu")


def test_the_console_script_converts_in_a_pipe(tmp_path):
    jsonl = '{"notes": [{"pitch": 60, "velocity": 80, "startTime": 0.0, "endTime": 0.5}]}\n'
    mtools_bin = shutil.which("mtools", path=str(BIN))
    to_midi = subprocess.run([mtools_bin, "convert", "--to", "midi"], input=jsonl.encode(),
                             capture_output=True, timeout=60)
    assert to_midi.returncode == 0 and to_midi.stdout.startswith(b"MThd"), to_midi.stderr
    back = subprocess.run([mtools_bin, "convert", "--to", "jsonl"], input=to_midi.stdout,
                          capture_output=True, timeout=60)
    assert json.loads(back.stdout)["notes"][0]["pitch"] == 60


@pytest.mark.parametrize("card", [c for c in list_models() if c.task == "continue"],
                         ids=lambda card: card.spec)
def test_every_bundled_continue_model_runs_from_the_console_script(card):
    extra = ["--chords", "C G Am F"] if card.name == "improv_rnn" else []
    done = subprocess.run([shutil.which("mtools", path=str(BIN)), "continue", "--model", card.spec,
                           "--bars", "2", "--seed", "1", "--to", "jsonl", *extra],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    notes = json.loads(done.stdout)["notes"]
    assert notes and all(0 <= n["pitch"] <= 127 for n in notes)


@pytest.mark.parametrize("card", [c for c in list_models() if c.task == "harmonize"],
                         ids=lambda card: card.spec)
def test_every_bundled_harmonize_model_runs_from_the_console_script(card):
    done = subprocess.run([shutil.which("mtools", path=str(BIN)), "harmonize", "--model", card.spec,
                           "--melody", "72 _ _ _ 71 _ _ _ 69 _ _ _ _ _ _ _", "--iterations", "4",
                           "--seed", "1", "--to", "jsonl"],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    notes = json.loads(done.stdout)["notes"]
    assert {n.get("instrument", 0) for n in notes} == {0, 1, 2, 3}
    assert [n["pitch"] for n in notes if n.get("instrument", 0) == 0] == [72, 71, 69]


@pytest.mark.parametrize("card", [c for c in list_models() if c.task == "interpolate"],
                         ids=lambda card: card.spec)
def test_every_bundled_interpolate_model_samples_from_the_console_script(card):
    done = subprocess.run([shutil.which("mtools", path=str(BIN)), "interpolate", "--model", card.spec,
                           "--sample", "2", "--seed", "1", "--to", "jsonl"],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    scores = [json.loads(line) for line in done.stdout.decode().splitlines()]
    seconds = card.encoding["steps"] / card.encoding["steps_per_quarter"] * 0.5  # at 120 qpm
    assert len(scores) == 2 and all(s["totalTime"] == pytest.approx(seconds) for s in scores)
