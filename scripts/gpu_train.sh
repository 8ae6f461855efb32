#!/usr/bin/env bash
# Train the models that need a GPU in one call on a lent GPU machine (the
# `device` tool), and bring back their best weights. In three steps:
#
#   1. here:  scripts/gpu_train.sh prepare
#      copies the data files and corpus caches the runs read into .device/
#      (git-ignored; it travels with `carry`), about 5 MB.
#   2. there: device run, carry [".device"], command
#        bash scripts/gpu_train.sh run MINUTES [MODEL ...]
#      trains each MODEL (default: coconet drums_2bar attention_improv;
#      the last two fine-tune their bundled models, at the
#      learning rate their CPU runs ended at) in its own
#      process, all at once on the one GPU, for MINUTES of training each, and
#      leaves $OUT/MODEL/best.pt (the weights of the best validation, with
#      their history; over 15 MB it comes back as best.pt.part-aa, -ab ...:
#      `cat best.pt.part-* > best.pt`) and $OUT/MODEL.log. A run killed at
#      the call's limit still leaves its best.pt so far (unsplit: it comes
#      back only when under the tool's 16 MB a file).
#   3. here:  copy a returned MODEL/ folder to ~/.cache/mtools/runs/, then, with
#      the network options the run used (train_one below),
#        mtools train coconet --data jsb --data js_fakes --hidden 128 --layers 24 \
#            --run-dir DIR --export-only --out models/
#        mtools train music_vae --config drums_2bar --data groove --scheduled-sampling-rate 250 \
#            --run-dir DIR --export-only --out models/
#        mtools train improv_rnn --config attention_improv --data nottingham --dropout 0.2 \
#            --run-dir DIR --export-only --out models/
#      exports, measures on the valid split and writes the card (a run
#      folder with best.pt alone resumes from it; see training/loop.py).
#
# The GPU machine has python3 with torch, numpy, typer, onnx and onnxruntime
# but no music21, mido or audio libraries, and reaches no network: the runs
# use PYTHONPATH=src and read only what `prepare` put in .device/.
#
# Environment: GPU_TRAIN_DEVICE (default cuda; cpu to try the script here),
# GPU_TRAIN_SMALL=1 (tiny networks, to try the script here), GPU_TRAIN_KIT
# (default .device), OUT (required for `run`; the device tool sets it).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
KIT="${GPU_TRAIN_KIT:-$ROOT/.device}"
DATA_FILES=(jsb_chorales/Jsb16thSeparated.train_valid.npz js_fakes/js-fakes-16thSeparated.npz)
CACHES=(melodies-music21-folk melodies-nottingham lead_sheets-nottingham drums-groove)
DEFAULT_MODELS=(coconet drums_2bar attention_improv)
# (mel_16bar and trio_16bar are built on 2-bar models in minutes on a CPU)

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

prepare() {
    local data=${MTOOLS_DATA:-$ROOT/../shared/data}
    local cache=${MTOOLS_CACHE:-$HOME/.cache/mtools}
    local python=${PYTHON:-$ROOT/.venv/bin/python}
    rm -rf "$KIT"
    mkdir -p "$KIT/data" "$KIT/cache/data"
    for file in "${DATA_FILES[@]}"; do
        mkdir -p "$KIT/data/$(dirname "$file")"
        cp "$data/$file" "$KIT/data/$file"
    done
    # The corpus caches (parsed here, where music21 and the MIDI files are).
    MTOOLS_DATA=$data MTOOLS_CACHE=$cache "$python" -c '
from mtools.training import corpora
for source in ("music21:folk", "nottingham"):
    print(source, len(corpora.load_melodies(source)), "melodies")
print("groove", len(corpora.load_drum_tracks("groove")), "drum tracks")
print("nottingham", len(corpora.load_lead_sheets("nottingham")), "lead sheets")'
    for name in "${CACHES[@]}"; do
        cp "$cache/data/$name.npz" "$cache/data/$name.json" "$KIT/cache/data/"
    done
    # Compressed, they travel in a third of the room (np.load reads both).
    "$python" -c '
import sys, numpy as np
for path in sys.argv[1:]:
    with np.load(path, allow_pickle=False) as arrays:
        data = {name: arrays[name] for name in arrays.files}
    np.savez_compressed(path, **data)' "$KIT"/cache/data/*.npz
    du -sh "$KIT"
    local tree
    tree=$(( $(git -C "$ROOT" ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) + $(du -sb "$KIT" | cut -f1) ))
    echo "the working tree and the kit: $(( tree / 1048576 )) MiB of the device tool's 64"
}

train_one() {  # model minutes device
    local model=$1 minutes=$2 device=$3 small=${GPU_TRAIN_SMALL:-0}
    local args
    case $model in
        coconet)
            # 128 filters x 24 layers: 3.3M weights, a 13 MB best.pt (the
            # device tool brings back files up to 16 MB).
            args=(coconet --data jsb --data js_fakes --batch-size 64 --hidden 128 --layers 24)
            [[ $small == 1 ]] && args=(coconet --data jsb --batch-size 4 --hidden 8 --layers 2) ;;
        drums_2bar)
            # Goes on from the bundled model (9 MB, float) as its CPU run did.
            args=(music_vae --config drums_2bar --data groove --scheduled-sampling-rate 250
                  --init-from music_vae:drums_2bar --learning-rate 0.00015)
            [[ $small == 1 ]] && args=(music_vae --config drums_2bar --data groove
                                       --batch-size 4 --hidden 8) ;;
        attention_improv)
            args=(improv_rnn --config attention_improv --data nottingham --dropout 0.2
                  --init-from improv_rnn:attention_improv --learning-rate 0.0003)
            [[ $small == 1 ]] && args=(improv_rnn --config attention_improv --data nottingham
                                       --batch-size 4 --hidden 8 --layers 1) ;;
        *)
            echo "gpu_train: unknown model $model (${DEFAULT_MODELS[*]})" >&2
            return 2 ;;
    esac
    # The export after training goes to a scratch folder: it is redone here.
    local limit
    limit=$(python3 -c 'import sys; print(int(float(sys.argv[1]) * 60) + 240)' "$minutes")
    timeout "$limit" python3 -m mtools train "${args[@]}" \
        --device "$device" --max-minutes "$minutes" --run-dir "$OUT/$model" \
        --out "$KIT/out/$model"
}

run() {
    [[ $# -ge 1 ]] || usage
    local minutes=$1
    shift
    local models=("$@")
    [[ ${#models[@]} -gt 0 ]] || models=("${DEFAULT_MODELS[@]}")
    : "${OUT:?set OUT to the folder whose files come back}"
    [[ -d $KIT/data ]] || { echo "gpu_train: no .device/ here: run 'prepare' and carry it" >&2; exit 66; }
    export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    export MTOOLS_DATA="$KIT/data" MTOOLS_CACHE="$KIT/cache"
    local device=${GPU_TRAIN_DEVICE:-cuda}
    python3 -c 'import sys, torch
cuda = torch.cuda.is_available()
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0) if cuda else "the CPU")
sys.exit(0 if cuda or sys.argv[1] == "cpu" else 69)' "$device"
    # The runs share the machine's cores: CPU-side work (batches, numpy)
    # in each must not start a thread per core.
    local threads=$(( $(nproc) / ${#models[@]} ))
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( threads > 0 ? threads : 1 ))}
    local pids=() model status=0
    for model in "${models[@]}"; do
        train_one "$model" "$minutes" "$device" > "$OUT/$model.log" 2>&1 &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            echo "gpu_train: ${models[$i]} failed; the end of its log:" >&2
            status=1
        fi
        tail -n 5 "$OUT/${models[$i]}.log"
    done
    for model in "${models[@]}"; do
        # last.pt (weights and optimizer) comes back only under 16 MB; best.pt does.
        find "$OUT/$model" -maxdepth 1 \( -name last.pt -size +15M -o -name '.*.tmp' \) -delete \
            2>/dev/null || true
        if [[ -f $OUT/$model/best.pt && $(stat -c %s "$OUT/$model/best.pt") -gt 15000000 ]]; then
            split -b 15000000 "$OUT/$model/best.pt" "$OUT/$model/best.pt.part-"
            rm "$OUT/$model/best.pt"
        fi
        ls -l "$OUT/$model" 2>/dev/null || true
    done
    return $status
}

case ${1:-} in
    prepare) shift; prepare "$@" ;;
    run) shift; run "$@" ;;
    *) usage ;;
esac
