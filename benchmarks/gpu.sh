#!/usr/bin/env bash
# BoneXage benchmarks on a GPU machine, in about four minutes: loader, training step, training pipeline, prediction.
#
# usage: benchmarks/gpu.sh RESULTS_DIR [--quick]
#
#   RESULTS_DIR  where the JSON results and gpu_log.txt go (e.g. $OUT); at most 8 files
#   --quick      tiny sizes on whatever device there is (a CPU works): an end-to-end check of this script
#
# Runs from the checkout with nothing to install: torch, torchvision, numpy, pandas, pillow, tqdm and matplotlib are
# enough (without pydicom or safetensors the benchmarks use stand-ins, PNG files only, see benchmarks/_common.py). It
# writes a synthetic data set (bonexage.synthetic, 3,000 images at 512 px, all cores) and builds its cache on the spot,
# in a scratch folder that is deleted at the end. Real radiographs are added when BONEXAGE_SAMPLES points at the RSNA
# samples folder (the one holding raw/labels.csv and raw/*.png), or shared/data/rsna-samples sits above the checkout or
# the current folder (bonexage.io.find_rsna_samples).
# Environment: PYTHON (default python3), N_TRAIN (3000), PIPELINES (original,fast; add fast_compile for torch.compile),
# COMPILE (1: also time AMP + channels_last + torch.compile, last; 0: skip it).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: benchmarks/gpu.sh RESULTS_DIR [--quick]}
QUICK=0; [ "${2:-}" = "--quick" ] && QUICK=1
PY=${PYTHON:-python3}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/bonexage-gpu-XXXXXX"); trap 'rm -rf "$SCRATCH"' EXIT
LOG="$OUT/gpu_log.txt"; : > "$LOG"
START=$SECONDS
say() { echo "[$(date +%T) +$((SECONDS - START))s] $*" | tee -a "$LOG" >&2; }
run() {  # run NAME SCRIPT ARGS...: one benchmark, its JSON into $OUT/NAME.json; a failure is logged, the rest goes on
  local name=$1; shift; local t0=$SECONDS
  say "$name: $PY $*"
  if "$PY" "$@" --out "$OUT/$name.json" > /dev/null 2>> "$LOG"; then say "$name: done in $((SECONDS - t0)) s"
  else say "$name: FAILED after $((SECONDS - t0)) s (see the log above)"; fi
}

"$PY" - <<'EOF' 2>&1 | tee -a "$LOG" >&2
import os, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cores", os.cpu_count(),
      "gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else None)
EOF
REAL=$("$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); import _common; print(_common.raw_samples() or '')")
DATA=$SCRATCH/data
if [ $QUICK = 1 ]; then
  say "quick mode: tiny sizes"
  run make_data benchmarks/make_data.py "$DATA" --n-train 32 --size 64 --workers 2
  run loader_synthetic benchmarks/loader.py --quick --images "$DATA/boneage-training-dataset"
  run train_step benchmarks/train_step.py --quick --what steps --threads 1
  run pipeline_synthetic benchmarks/train_step.py --quick --what pipeline --data "$DATA" --threads 1
  run predict benchmarks/predict.py --quick --images "$DATA/boneage-training-dataset" --threads 1
else
  # most important first, so that a run cut short still answers the targets; torch.compile (a minute per shape) last
  run train_step benchmarks/train_step.py --what steps --batch-sizes 32,64 --variants fp32,amp,amp_cl
  [ -n "$REAL" ] && run pipeline_rsna benchmarks/train_step.py --what pipeline --images "$REAL" --items 1024 --pipelines "${PIPELINES:-original,fast}"
  run make_data benchmarks/make_data.py "$DATA" --n-train "${N_TRAIN:-3000}" --size 512 --workers 0
  run pipeline_synthetic benchmarks/train_step.py --what pipeline --data "$DATA" --items 1024 --pipelines "${PIPELINES:-original,fast}"
  run predict benchmarks/predict.py --images "$DATA/boneage-training-dataset" --items 512
  [ -n "$REAL" ] && run loader_rsna benchmarks/loader.py --images "$REAL" --size 512 --items 280 --workers 0,4,16
  run loader_synthetic benchmarks/loader.py --images "$DATA/boneage-training-dataset" --size 512 --items 512 --workers 0,4,16
  [ "${COMPILE:-1}" = 1 ] && run train_step_compile benchmarks/train_step.py --what steps --batch-sizes 64 --variants amp_cl_compile
fi
say "all done in $((SECONDS - START)) s; results in $OUT:"
ls -l "$OUT" | tee -a "$LOG" >&2
