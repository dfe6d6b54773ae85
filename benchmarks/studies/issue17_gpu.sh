#!/usr/bin/env bash
# Issue 17's GPU measurements in one call on one H100, at most ~7 minutes of wall time:
#   1. the InfoGAN study (benchmarks/studies/infogan_study.py; hard limit --budget-s),
#   2. the quality benchmark's rows this issue changed or added, seed 0 (gan's Sigmoid G, the
#      uniform priors of dcgan/cgan/lsgan, InfoGAN's new defaults, BEGAN and BEGAN-CS),
#   3. BEGAN and BEGAN-CS with seeds 1 and 2 (the target is 3 of 3 seeds),
#   4. BEGAN-CS's digit coverage along training (seed 1; constraint weight 0.1 and 1.0).
# All parts run at once (the GPU is shared); every part writes its results as they finish, so a
# part cut by its time limit still leaves what it finished. Everything lands in ONE file,
# $OUT/issue17.tar.gz (the working folder is a temp folder, so $OUT holds nothing else from
# here); the logs' tails go to stdout.
#
# Needs: python3 with torch (CUDA) and ganzoo's dependencies (pydantic: carry it as wheels), the
# MNIST test split's IDX files under $MNIST_ROOT/MNIST/raw. From the repository root:
#   MNIST_ROOT=data/mnist OUT=$OUT bash benchmarks/studies/issue17_gpu.sh
# A CPU smoke test of the same script (minutes):
#   DEVICE=cpu GRAPHS= STUDY_EXTRA="--scale 0.004 --only default long --seeds 0" \
#   QUALITY_EXTRA="--steps 10 --eval-samples 200" QUALITY_VARIANTS="gan began_cs" SEEDS12_VARIANTS=began_cs bash benchmarks/studies/issue17_gpu.sh
set -u
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
OUT="${OUT:-benchmarks/out/issue17}"
MNIST_ROOT="${MNIST_ROOT:-data/mnist}"
BUDGET="${BUDGET:-380}"  # seconds for each part
DEVICE="${DEVICE:-cuda}"
GRAPHS="${GRAPHS---cuda-graphs}"
STUDY_EXTRA="${STUDY_EXTRA:-}"
QUALITY_EXTRA="${QUALITY_EXTRA:-}"
SEEDS12_VARIANTS="${SEEDS12_VARIANTS:-began began_cs}"
QUALITY_VARIANTS="${QUALITY_VARIANTS:-gan dcgan cgan infogan lsgan began began_cs}"
PY="${PYTHON:-python3}"
RES="$(mktemp -d)/issue17"
mkdir -p "$OUT" "$RES/sheets-seed0" "$RES/sheets-seeds12"
export PYTHONPATH="$ROOT/src:$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader; nproc; } > "$RES/machine.txt" 2>&1

# shellcheck disable=SC2086  # the *_EXTRA and GRAPHS options are meant to split into words
"$PY" -m benchmarks.studies.infogan_study --device "$DEVICE" $GRAPHS --jobs 4 --budget-s "$BUDGET" \
    --min-left-s 45 --mnist-root "$MNIST_ROOT" --out "$RES/infogan" $STUDY_EXTRA > "$RES/infogan_study.log" 2>&1 &
# shellcheck disable=SC2086
timeout $((BUDGET + 15)) "$PY" -m benchmarks.quality --device "$DEVICE" $GRAPHS --jobs 5 \
    --variants $QUALITY_VARIANTS --mnist-root "$MNIST_ROOT" \
    --out "$RES/quality_seed0.json" --sheets "$RES/sheets-seed0" $QUALITY_EXTRA > "$RES/quality_seed0.log" 2>&1 &
# shellcheck disable=SC2086
timeout $((BUDGET + 15)) "$PY" -m benchmarks.quality --device "$DEVICE" --jobs 4 --variants $SEEDS12_VARIANTS \
    --seeds 1 2 --mnist-root "$MNIST_ROOT" --out "$RES/quality_began_seeds12.json" \
    --sheets "$RES/sheets-seeds12" $QUALITY_EXTRA > "$RES/quality_began_seeds12.log" 2>&1 &
# Why BEGAN-CS does or does not keep the digits: its coverage every 1000 steps (seed 1, the seed
# where plain BEGAN fell to 2/10 on CPU) at the paper's weight and at 10x, with the constraint's
# value logged beside k_t and M.
for w in 0.1 1.0; do
    # shellcheck disable=SC2086
    timeout $((BUDGET + 15)) "$PY" -m benchmarks.studies.coverage_trajectory began --device "$DEVICE" --seed 1 \
        --every "${EVERY:-1000}" --set model.began.constrained=true --set "model.began.constraint_weight=$w" \
        --mnist-root "$MNIST_ROOT" $QUALITY_EXTRA > "$RES/began_cs_trajectory_w$w.log" 2>&1 &
done
wait

tar czf "$OUT/issue17.tar.gz" -C "$(dirname "$RES")" issue17
for log in "$RES"/*.log; do echo "=== $(basename "$log")"; tail -n 25 "$log"; done
echo "archive: $OUT/issue17.tar.gz ($(du -h "$OUT/issue17.tar.gz" | cut -f1)); working folder: $RES"
