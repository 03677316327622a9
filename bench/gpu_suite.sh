#!/usr/bin/env bash
# One GPU session's checks in one command: bench/gpu_suite.py (the steps, their budgets, the figures), after
# installing the packages the device machine lacks from wheels carried in .whl/.
#
# The GPU session (one H200, 16 cores, nothing outside it reachable):
#   1. On the session's own machine, in the checkout's root (the device call sends that checkout):
#        bash bench/gpu_suite.sh --fetch-wheels
#      pip downloads the pinned wheels below (Python 3.12, x86-64) into .whl/, which git ignores.
#   2. One device call:
#        run(command="OUT=$OUT bash bench/gpu_suite.sh", timeout_s=600, carry=[".whl"])
#      It ends within about 9 minutes (SUITE_S=540) and brings back 8 files at most: suite.log, figures.txt
#      (every figure as name=value), logs.tar.gz (every log, the metrics JSON, train.log, all pictures),
#      reconstruction.png, traversal.png, mi.png, dtype_curves.png, reproduce_figures.png.
#      Of 15 minutes of device time the machine's start takes 1-2: there is no time for a second call, so
#      rehearse first (below) and give the machine back after it.
#
# Budgets in seconds (BUDGETS in bench/gpu_suite.py; an environment variable of the same name overrides one):
#   SUITE_S=540       the whole suite, this wrapper included; no step runs past it, BUNDLE_S=15 kept for packing
#   SETUP_S=60        import check (torch sees the GPU; gdrae, zarr, pydantic, tensorboardX import)
#   PREPARE_S=180     gdrae-data prepare shapes2d-synth, in the background from the start
#   item 1, step speed, ends by ITEM1_S=200 (later runs are skipped):
#     EAGER_S=45      each eager run with --breakdown: shapes2d, shapes3d, sector2dunif
#     GRAPHS_S=100    each CUDA-graphs run: sector2dunif, shapes2d
#     COMPILE_S=100   each torch.compile run: sector2dunif, shapes2d, shapes3d
#   item 4, first image result:
#     training: SUITE_S - now - AFTER_TRAIN_S(160), within TRAIN_MIN_S=60 and TRAIN_MAX_S=300, then SIGINT
#               and TRAIN_GRACE_S=60 for its checkpoint
#     EVAL_S=120      gdrae-eval histogram,mig,sap,geometry (encodes the 737,280 images once)
#     DCI_S=240       DCI, in the background (CPU) from the stored code table while item 3 runs
#     ENCODE_S=60     bench/eval.py encoding throughput
#   item 3, bfloat16: DTYPE_RUN_S=60 for each of float32 and bfloat16 (then SIGINT), DTYPE_CMP_S=40 to compare
#   item 5, published Sector2D run: what is left, only if it covers the estimate (REPRO_EVAL_S=150 per run's
#     evaluations; REPRO_FORCE=1 runs it regardless)
#
# Rehearsal on a CPU, every step at tiny sizes, a few minutes:
#   OMP_NUM_THREADS=1 OUT=/tmp/gpu-suite-out bash bench/gpu_suite.sh --rehearse
set -u
cd "$(dirname "$0")/.." || exit 1
export SUITE_T0="${SUITE_T0:-$(date +%s)}"
PY="${PYTHON:-python3}"
# what the device image lacks of setup.cfg's install_requires (with their own needs), as tested here
WHEELS=(zarr==3.1.6 numcodecs==0.16.6 google-crc32c==1.9.0 donfig==0.8.1.post1 tensorboardX==2.6.5
        pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
        typing-extensions==4.16.0)
WHEEL_PY="${WHEEL_PY:-3.12}"  # the device's Python
SITE="${SUITE_SITE:-/tmp/gdrae-gpu-suite-site}"

if [ "${1:-}" = "--fetch-wheels" ]; then
    exec "$PY" -m pip download --no-deps --only-binary=:all: --python-version "$WHEEL_PY" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
fi

OUT="${OUT:-runs/gpu_suite}"
mkdir -p "$OUT" || exit 1
: > "$OUT/figures.txt"
{
    if compgen -G ".whl/*.whl" > /dev/null; then
        if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl; then
            export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
            echo "wheels_installed=$(compgen -G '.whl/*.whl' | wc -l)" | tee -a "$OUT/figures.txt"
        else
            echo "wheels_failed=pip install from .whl/ failed" | tee -a "$OUT/figures.txt"
        fi
    else
        echo "wheels_installed=0" | tee -a "$OUT/figures.txt"  # none carried: the packages must be installed
    fi
    "$PY" -u bench/gpu_suite.py --out "$OUT" "$@"
} 2>&1 | tee "$OUT/suite.log"
exit "${PIPESTATUS[0]}"
