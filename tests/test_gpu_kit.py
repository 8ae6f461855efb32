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
