#!/usr/bin/env bash
# Build the benchmark venv .venv-bench at the repo root: mtools (editable, cpu
# and eval extras) next to the libraries it is measured against, pretty_midi,
# note_seq 0.0.5 and basic-pitch 0.4.0 (on its bundled ONNX model), plus
# pytest for tests/test_note_seq_interop.py.
# None of these is a project dependency; this venv exists only for
# benchmarks/bench_cli.py, benchmarks/bench_transcribe.py and the note_seq
# interop test.
#
#   benchmarks/setup_venv.sh           # build, or do nothing if already complete
#   benchmarks/setup_venv.sh --force   # rebuild from scratch
#   PYTHON=python3.11 benchmarks/setup_venv.sh
#
# Why not `pip install note-seq`: that pulls librosa's full stack (numba,
# llvmlite, scikit-learn, ...: 69 packages, ~760 MB). `import note_seq` only
# needs what its modules import at top level: absl, attrs, numpy, scipy,
# pretty_midi, protobuf, pydub, bokeh, IPython, pandas, and `import librosa`,
# which is lazy (lazy_loader) and so works with `--no-deps librosa`. With
# that, midi_io and google.protobuf.json_format work as with the full install
# (same note counts, same JSON, same import time; no numpy downgrade; the
# generated music_pb2 loads with the current protobuf and its upb backend, so
# PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION is not needed). `pip check` will
# list librosa's and note-seq's missing extras: expected.
#
# Why not `pip install basic-pitch`: on Linux with Python 3.11 it pulls
# TensorFlow (~2 GB) and downgrades numpy. Its ONNX model (nmp.onnx, in the
# wheel) runs on onnxruntime, which basic_pitch picks when TensorFlow,
# coremltools and tflite-runtime are all absent. So: `--no-deps
# basic-pitch==0.4.0 "resampy<0.4.3"` (its declared range), then what its
# inference path imports and the note_seq set lacks: numba (resampy and
# librosa.core import it; wheels exist for the current numpy), audioread,
# msgpack, joblib and pooch (librosa.load), and mir_eval (the `eval` extra).
# numpy is pinned to the version already installed so nothing downgrades it.
# bench_transcribe.py renders its held-out pieces with tinysoundfont, whose
# wheel declares pyaudio (which does not build): --no-deps, as in the Makefile.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-bench"
PYTHON="${PYTHON:-python3}"
MARKER="$VENV/.bench-complete"
RECIPE_HASH="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"
IMPORTS="import mtools, pretty_midi, note_seq, pytest, mir_eval, basic_pitch.inference, tinysoundfont"

if [[ "${1:-}" == "--force" ]]; then
    rm -rf "$VENV"
elif [[ -f "$MARKER" && "$(cat "$MARKER")" == "$RECIPE_HASH" ]] \
        && "$VENV/bin/python" -c "$IMPORTS" 2>/dev/null; then
    echo "setup_venv: $VENV is complete (recipe $RECIPE_HASH); --force rebuilds it" >&2
    exit 0
fi

start=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
pip_install() {  # quiet pip; drop the local mirror's "Location ... is ignored" noise
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
}
pip_install -e "$ROOT[cpu,eval]" pretty_midi pytest
pip_install --no-deps note-seq==0.0.5 librosa lazy_loader
pip_install absl-py attrs scipy protobuf pydub pandas bokeh ipython
NUMPY="numpy==$("$VENV/bin/python" -c 'import numpy; print(numpy.__version__)')"
pip_install --no-deps basic-pitch==0.4.0 "resampy<0.4.3" tinysoundfont
pip_install numba audioread msgpack joblib pooch "$NUMPY"
"$VENV/bin/python" - <<'EOF'
import warnings
warnings.simplefilter("ignore")  # pydub warns that ffmpeg is absent; not needed here
import note_seq, pretty_midi, mtools
from google.protobuf import json_format
from note_seq.protobuf import music_pb2
json_format.Parse('{"notes":[{"pitch":60,"endTime":1}]}', music_pb2.NoteSequence())
print(f"setup_venv: note_seq {note_seq.__version__}, pretty_midi {pretty_midi.__version__}, "
      f"mtools {mtools.__version__} import fine", flush=True)
EOF
# basic-pitch must pick its ONNX model and hear a 2-s A4 sine as A4.
"$VENV/bin/python" - <<'EOF'
import logging
logging.disable(logging.WARNING)  # basic_pitch warns once per backend it lacks
import contextlib, importlib.metadata, io, os, tempfile
import numpy as np, soundfile
import basic_pitch
from basic_pitch.inference import Model, predict
assert basic_pitch.ICASSP_2022_MODEL_PATH.name == "nmp.onnx", basic_pitch.ICASSP_2022_MODEL_PATH
model = Model(basic_pitch.ICASSP_2022_MODEL_PATH)
assert model.model_type == Model.MODEL_TYPES.ONNX, model.model_type
with tempfile.TemporaryDirectory() as tmp:
    wav = os.path.join(tmp, "a4.wav")
    t = np.arange(2 * 22050) / 22050
    soundfile.write(wav, 0.5 * np.sin(2 * np.pi * 440 * t), 22050)
    with contextlib.redirect_stdout(io.StringIO()):
        _, _, notes = predict(wav, model)
pitches = sorted({int(n[2]) for n in notes})
assert 69 in pitches, pitches
print(f"setup_venv: basic-pitch {importlib.metadata.version('basic-pitch')} runs its ONNX "
      f"model (A4 sine -> pitches {pitches}), numpy {np.__version__}", flush=True)
EOF
echo "$RECIPE_HASH" > "$MARKER"
echo "setup_venv: built $VENV in $(( $(date +%s) - start )) s" >&2
