#!/usr/bin/env bash
# The GPU check, as one short prepared script: nvidia-smi, the device probe, both Whisper
# backends (CTranslate2, transformers) on the same synthesised files with realtime factors and
# their agreement, SER with the published models' sizes, CUDA-graph vs eager SER at batch 1-8,
# GPU utilisation during the SER stage, dynamic batching on vs off through the daemon core,
# real NVML readings.  Targets are printed next to the measured values.  JSON goes to
# $OUT (a lent machine sends that folder back), else ./gpu_check_out.
#
#   bench/gpu_check.sh              # on a GPU machine: about 6 minutes, stops starting new
#                                   # parts after 7 (GPU_CHECK_BUDGET_S)
#   bench/gpu_check.sh --dry-run    # the same code paths on the CPU with tiny inputs (< 2 min)
#
# Extra arguments go to bench/gpu_check.py (--models, --audio DIR, --batch-size, ...).
#
# Python: .venv/bin/python when it works (a machine set up with scripts/setup.sh, the GB10),
# else python3 (a lent machine's image: torch and transformers, no ctranslate2 / faster-whisper
# / av).  Wheels for what is missing can be carried in .whl/ (installed to /tmp/site here).
# A lent machine's transfer (64 MiB) carries no model.bin: models/<name>/ with config.json and
# tokenizer.json only makes the check build a random-weight Whisper of that shape (the JSON
# says which weights ran), and --audio DIR with WAV files (python bench/gpu_check.py
# --make-audio DIR) stands in for espeak-ng.
set -u
cd "$(dirname "$0")/.."

DRY=()
if [[ "${1:-}" == "--dry-run" ]]; then DRY=(--dry-run); shift; fi
OUT_DIR="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT_DIR"

PY=python3
if [[ -x .venv/bin/python ]] && .venv/bin/python -c 'import torch' >/dev/null 2>&1; then
    PY=.venv/bin/python
elif [[ -d .whl ]] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD:$PWD/daemon${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
echo "[gpu_check] python: $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi 2>&1 | tee "$OUT_DIR/nvidia-smi.txt"
else
    echo "no nvidia-smi on this machine" | tee "$OUT_DIR/nvidia-smi.txt"
fi

BUDGET="${GPU_CHECK_BUDGET_S:-}"
exec "$PY" bench/gpu_check.py ${DRY[@]+"${DRY[@]}"} --out "$OUT_DIR" ${BUDGET:+--budget-s "$BUDGET"} "$@"
