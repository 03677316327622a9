#!/usr/bin/env bash
# The GPU checks (bench/gpu_suite.py: the steps, their budgets, the figures) on a CUDA machine, after
# installing wheels from .whl/ when there are some: for a machine without network access.
#
#   bash bench/gpu_suite.sh --out runs/gpu_suite --budget 540     # every option goes to bench/gpu_suite.py
#   OMP_NUM_THREADS=1 bash bench/gpu_suite.sh --out /tmp/gpu-suite --rehearse   # on a CPU, tiny, minutes
#
# A machine with network access installs the package as usual (pip install -e .) and needs no wheels.
# Without it: on a machine with network access, in the checkout's root,
#     bash bench/gpu_suite.sh --fetch-wheels
# downloads into .whl/ (which git ignores) the pinned wheels below for Python $WHEEL_PY on x86-64 Linux; copy
# the checkout with .whl/ to the CUDA machine, where this script installs them into $SUITE_SITE first.
# Budgets: --budget is the whole suite's (this script's install included); the steps' own are BUDGETS at
# the top of bench/gpu_suite.py, each overridden by an environment variable of its name.
set -u
cd "$(dirname "$0")/.." || exit 1
export SUITE_T0="${SUITE_T0:-$(date +%s)}"
PY="${PYTHON:-python3}"
# what a bare CUDA image with torch may lack of setup.cfg's install_requires (with their own needs), as tested
WHEELS=(zarr==3.1.6 numcodecs==0.16.6 google-crc32c==1.9.0 donfig==0.8.1.post1 tensorboardX==2.6.5
        pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
        typing-extensions==4.16.0)
WHEEL_PY="${WHEEL_PY:-3.12}"  # the CUDA machine's Python
SITE="${SUITE_SITE:-/tmp/gdrae-gpu-suite-site}"

if [ "${1:-}" = "--fetch-wheels" ]; then
    exec "$PY" -m pip download --no-deps --only-binary=:all: --python-version "$WHEEL_PY" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
fi

if compgen -G ".whl/*.whl" > /dev/null; then
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl; then
        export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
        echo "wheels_installed=$(compgen -G '.whl/*.whl' | wc -l)"
    else
        echo "wheels_failed=pip install from .whl/ failed"
    fi
fi
exec "$PY" -u bench/gpu_suite.py "$@"
