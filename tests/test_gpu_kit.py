"""scripts/gpu_train.sh, tried on the CPU with tiny networks: what a lent
GPU machine would run, so the one call there does not fail on a typo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_train.sh"


def kit_run(tmp_path: Path, *args: str, kit: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "OUT": str(tmp_path / "out"), "GPU_TRAIN_KIT": str(kit or tmp_path / "kit"),
           "GPU_TRAIN_DEVICE": "cpu", "GPU_TRAIN_SMALL": "1"}
    (tmp_path / "out").mkdir(exist_ok=True)
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_usage_and_a_missing_kit_are_clear(tmp_path):
    assert kit_run(tmp_path).returncode == 2
    missing = kit_run(tmp_path, "run", "1")
    assert missing.returncode == 66 and "prepare" in missing.stderr


def test_a_coconet_run_leaves_its_best_weights_and_log(tmp_path):
    kit = tmp_path / "kit"
    chorales = kit / "data" / "jsb_chorales"
    chorales.mkdir(parents=True)
    rng = np.random.default_rng(0)
    def pieces(n):
        return np.array([60 + rng.integers(-7, 8, size=(48, 4)).astype(float) for _ in range(n)],
                        dtype=object)
    np.savez(chorales / "Jsb16thSeparated.train_valid.npz", train=pieces(6), valid=pieces(2))
    done = kit_run(tmp_path, "run", "0.02", "coconet", kit=kit)
    assert done.returncode == 0, done.stderr + done.stdout
    assert (tmp_path / "out" / "coconet" / "best.pt").is_file()
    assert "wrote" in (tmp_path / "out" / "coconet.log").read_text()


def test_the_fine_tunes_run_on_sources_the_kit_carries(tmp_path):
    # drums_2bar and attention_improv read Groove and Nottingham through the
    # kit's data root (on the GPU machine: their corpus caches).
    from builders import drums, melody, write_random_tunes
    from dataclasses import replace

    from mtools.io.midi import midi_to_score, score_to_midi
    from mtools.score import ChordSymbol, make_score

    kit = tmp_path / "kit"
    groove = kit / "data" / "groove_midi"
    groove.mkdir(parents=True)
    rows = ["id,midi_filename,split"]
    rng = np.random.default_rng(1)
    for index in range(12):
        hits = [(int(rng.choice([36, 38, 42, 46])), step * 0.125) for step in range(8 * 16)
                if rng.random() < 0.4]
        score = make_score(drums(hits).notes, tempos=melody("60").tempos)
        (groove / f"beat{index}.mid").write_bytes(score_to_midi(score))
        rows.append(f"b{index},beat{index}.mid,{'validation' if index % 4 == 0 else 'train'}")
    (groove / "info.csv").write_text("\n".join(rows) + "\n")
    tunes = kit / "data" / "nottingham" / "MIDI"
    tunes.mkdir(parents=True)
    write_random_tunes(tunes, count=60)  # about a tenth fall in the valid part
    for path in tunes.iterdir():  # lead sheets: a chord symbol a bar
        tune = midi_to_score(path.read_bytes())
        chords = tuple(ChordSymbol(bar * 2.0, "CFGC"[bar % 4]) for bar in range(8))
        path.write_bytes(score_to_midi(replace(tune, chords=chords)))
    done = kit_run(tmp_path, "run", "0.02", "drums_2bar", "attention_improv", kit=kit)
    assert done.returncode == 0, done.stderr + done.stdout
    for model in ("drums_2bar", "attention_improv"):
        assert (tmp_path / "out" / model / "best.pt").is_file(), model
        assert "wrote" in (tmp_path / "out" / f"{model}.log").read_text()
