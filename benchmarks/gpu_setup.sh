#!/usr/bin/env bash
# Install ddpg on a GPU machine that has Python and a CUDA build of torch but no internet, from wheels
# carried beside the checkout, without replacing its torch; then run benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_setup.sh download   # here, with internet: wheels for Python 3.12 into $WHEELS
#   bash benchmarks/gpu_setup.sh            # there: install from $WHEELS and run the check
#
# Only what the check needs is carried (gymnasium, mujoco, pytest and what they need): the check
# writes no video, no TensorBoard and no plot. The Reacher's C extension is built if a C compiler is
# at hand; otherwise the same physics runs in NumPy (one warning says so).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-benchmarks/wheels-py312}
NEEDED="gymnasium mujoco tqdm pytest setuptools"
if [ "${1:-}" = download ]; then
  pip download --quiet --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --dest "$WHEELS" $NEEDED
  du -sh "$WHEELS"
  exit
fi
python -m pip install --quiet --no-index --find-links "$WHEELS" $NEEDED
# --no-deps: torch is the machine's own; the other requirements (video, plots, TensorBoard) are not used here.
python -m pip install --quiet --no-index --no-deps --no-build-isolation -e .
python benchmarks/gpu_check.py "${@}"
