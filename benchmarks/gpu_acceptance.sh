#!/usr/bin/env bash
# The project on a GPU machine without internet, in about 8 minutes on one H100:
#
#     bash benchmarks/gpu_acceptance.sh DATA_DIR OUT_DIR [ITERATIONS]
#
# DATA_DIR holds the ISBI 2012 stacks (train-volume.tif, train-labels.tif, test-volume.tif). The machine
# needs torch with CUDA and the project's dependencies, not the project: it is installed here without
# dependencies. What it does, with every log, record and report written under OUT_DIR:
#
#   1. installs the project (pip install --no-deps --no-build-isolation -e .) and imports the stacks;
#   2. runs the CUDA-marked tests (pytest -m cuda);
#   3. measures training throughput of the paper's network at batch 1, 4, 8 and 16 without compilation;
#   4. runs challenges/em.toml on the GPU for ITERATIONS iterations (default 3000) with its test-time
#      averaging, scoring and report, and packs the report and the run folder (without checkpoints and
#      predictions) into OUT_DIR/em-run.tar.gz;
#   5. measures prediction throughput on the 30 real test slices, with and without 8-fold averaging;
#   6. measures the training throughput again with torch.compile, while the budget lasts.
#
# Each benchmark writes its table to OUT_DIR with its command, commit and card (--out); one that its time
# limit stops leaves the rows it measured in OUT_DIR/log.txt only.
#
# Set PYTHON to choose the interpreter (default python3), BUDGET_S the seconds the whole script may
# take (default 480; the compiled measurement gets what is left of it) and SKIP_THROUGHPUT=1 to leave
# out steps 3, 5 and 6.
set -uo pipefail

if [ $# -lt 2 ]; then
    echo "usage: bash benchmarks/gpu_acceptance.sh DATA_DIR OUT_DIR [ITERATIONS]" >&2
    exit 2
fi
DATA=$(cd "$1" && pwd) || { echo "DATA_DIR $1: not a folder" >&2; exit 2; }
mkdir -p "$2" && OUT=$(cd "$2" && pwd)
ITERATIONS=${3:-3000}
PY=${PYTHON:-python3}
END=$(( $(date +%s) + ${BUDGET_S:-480} ))
WORK=$(mktemp -d)
export PYTHONUNBUFFERED=1
exec > >(tee "$OUT/log.txt") 2>&1
failed=0
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
git rev-parse HEAD 2>/dev/null || true

step "install"
$PY -m pip install -q --no-deps --no-build-isolation -e . || exit 1
$PY -m unetbench data import isbi2012 "$DATA" --data-root "$WORK/data" || exit 1

step "CUDA tests"
$PY -m pytest -q -m cuda -p no:cacheprovider
code=$?
if [ $code -ne 0 ] && [ $code -ne 5 ]; then failed=1; fi  # 5: no CUDA-marked test collected

step "training throughput, eager"
[ -n "${SKIP_THROUGHPUT:-}" ] && echo "skipped: SKIP_THROUGHPUT is set" || timeout 150 $PY benchmarks/train_throughput.py --device cuda --batch 1 4 8 16 --compile off \
    --out "$OUT/throughput-eager.md" || failed=1

RUN="$WORK/runs/em-cuda-$(date -u +%Y%m%d-%H%M)"
left=$(( END - $(date +%s) - 240 ))  # keep time for prediction, scoring, the report and step 5
step "em.toml on the GPU, $ITERATIONS iterations, training stopped after at most ${left} s"
# Ctrl-C at the time limit: the runner finishes the step, checkpoints and exits with 130
timeout -s INT "$left" $PY -m unetbench run challenges/em.toml --device cuda --iterations "$ITERATIONS" \
    --out "$RUN" --reports "$WORK/reports" --data-root "$WORK/data" --no-progress
code=$?
if [ $code -eq 130 ] || [ $code -eq 124 ]; then
    trained=$($PY -c "import sys; from unetbench.records.run_folder import RunDir; print(RunDir(sys.argv[1]).read_sessions()[-1].last_iteration)" "$RUN")
    step "the time limit stopped training at iteration $trained: prediction, scoring and report from there"
    $PY -m unetbench run "$RUN/spec.toml" --resume "$RUN" --iterations "$trained" --reports "$WORK/reports" \
        --data-root "$WORK/data" --no-progress || failed=1
elif [ $code -ne 0 ]; then
    failed=1
fi
tar -czf "$OUT/em-run.tar.gz" -C "$WORK" --exclude=checkpoints --exclude=predictions.h5 runs reports \
    || failed=1

step "prediction throughput"
[ -n "${SKIP_THROUGHPUT:-}" ] && echo "skipped: SKIP_THROUGHPUT is set" || timeout 90 $PY benchmarks/predict_throughput.py --device cuda --slices 30 --batch 8 16 \
    --data "$DATA" --out "$OUT/predict-throughput.md" || failed=1

left=$(( END - $(date +%s) ))
step "training throughput, torch.compile (${left} s left)"
if [ "$left" -gt 40 ] && [ -z "${SKIP_THROUGHPUT:-}" ]; then
    timeout "$left" $PY benchmarks/train_throughput.py --device cuda --batch 1 4 8 16 --compile on \
        --out "$OUT/throughput-compiled.md" || failed=1
else
    echo "skipped: too little time left"
fi

step "done, failed=$failed"
exit $failed
