#!/usr/bin/env bash
# The checks that need a GPU, in one go, on a machine with CUDA and a CUDA build of torch:
# the CUDA tests, `bench/cuda_search.py` (one search on the CPU and on CUDA) and
# `bench/eigsh.py --device cuda`. Usage: bench/cuda_check.sh [WHEEL_FOLDER] [SECONDS]
# WHEEL_FOLDER: wheels of the dependencies that python3 there lacks, installed without
# dependencies or an index (the machine may have no network). Logs go to $OUT (or ./cuda-check).
# For a machine whose python3 (3.12 here) already holds torch, numpy, scipy, scikit-learn,
# matplotlib, networkx and safetensors, the folder is made on a machine with an index by
#   pip download -d WHEELS --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 pydantic \
#       pydantic-settings sqlalchemy alembic mlxtend cachetools celery redis fastapi "psycopg[binary]"
# and then emptied of the wheels that machine already has (numpy, scipy, ...): 17 MB were left.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-cuda-check}"
mkdir -p "$out"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
if [ -n "${1:-}" ]; then
    "$python" -m pip install -q --no-index --no-deps "$1"/*.whl 2>&1 | tail -2
fi
nvidia-smi -L
"$python" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'
"$python" -m pytest -q -o addopts="" -p no:cacheprovider \
    tests/ridgerider/linalg/test_lanczos_cuda.py tests/ridgerider/search/test_loop_cuda.py \
    tests/workers/test_local_cuda.py 2>&1 | tee "$out/tests.log" | tail -15
timeout 270 "$python" bench/cuda_search.py --seconds "${2:-40}" 2>&1 | tee "$out/cuda_search.log" | tail -12
timeout 180 "$python" bench/eigsh.py --device cuda --json "$out/eigsh-cuda.json" 2>&1 \
    | tee "$out/eigsh.log" | grep -v "^{" | tail -45
