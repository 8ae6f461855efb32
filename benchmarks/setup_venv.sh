#!/usr/bin/env bash
# Build the benchmark venv .venv-bench at the repo root: mtools (editable, cpu
# extra) next to the two libraries it is measured against, pretty_midi and
# note_seq 0.0.5, plus pytest for tests/test_note_seq_interop.py.
# None of these is a project dependency; this venv exists only for
# benchmarks/bench_cli.py and the note_seq interop test.
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
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-bench"
PYTHON="${PYTHON:-python3}"
MARKER="$VENV/.bench-complete"
RECIPE_HASH="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"

if [[ "${1:-}" == "--force" ]]; then
    rm -rf "$VENV"
elif [[ -f "$MARKER" && "$(cat "$MARKER")" == "$RECIPE_HASH" ]] \
        && "$VENV/bin/python" -c "import mtools, pretty_midi, note_seq, pytest" 2>/dev/null; then
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
pip_install -e "$ROOT[cpu]" pretty_midi pytest
pip_install --no-deps note-seq==0.0.5 librosa lazy_loader
pip_install absl-py attrs scipy protobuf pydub pandas bokeh ipython
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
echo "$RECIPE_HASH" > "$MARKER"
echo "setup_venv: built $VENV in $(( $(date +%s) - start )) s" >&2
