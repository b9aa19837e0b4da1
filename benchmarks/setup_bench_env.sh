#!/usr/bin/env bash
# Benchmark-only environments (torch and the peers are never project dependencies).
#   bash benchmarks/setup_bench_env.sh          -> .bench/venv     torch 2.13.0 (CPU wheel), numpy<2.5, scipy, pyfftw, scikit-learn, numba
#   bash benchmarks/setup_bench_env.sh peers    -> also .bench/lightridge (lightridge 0.2.2 --no-deps beside torch,
#                                                  numpy, scipy, scikit-learn, pyfftw) and .bench/torchoptics (torchoptics 1.0.2)
# Every environment is throwaway: rm -r .bench to drop them. The repository is put on PYTHONPATH
# by the scripts that use them (benchmarks/b1_step.py, benchmarks/peers.py); nothing is installed from it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
TORCH=${TORCH_SPEC:-torch==2.13.0}
mk() {  # mk DIR PACKAGES...
  local dir=$1; shift
  if [ ! -x "$dir/bin/python" ]; then "$PY" -m venv "$dir"; fi
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
}
mk .bench/venv "$TORCH" "numpy>=2.0,<2.5" scipy pyfftw scikit-learn "numba>=0.61"
if [ "${1:-}" = "peers" ]; then
  # each peer environment also gets pyfftw: peers.py times our step in the same process
  mk .bench/lightridge "$TORCH" "numpy>=2.0,<2.5" scipy pyfftw scikit-learn
  .bench/lightridge/bin/python -m pip install -q --disable-pip-version-check --no-deps lightridge==0.2.2 \
    || echo "lightridge 0.2.2: not installable here" > .bench/lightridge/UNAVAILABLE
  mk .bench/torchoptics "$TORCH" "numpy>=2.0,<2.5" scipy pyfftw scikit-learn
  .bench/torchoptics/bin/python -m pip install -q --disable-pip-version-check torchoptics==1.0.2 \
    || echo "torchoptics 1.0.2: not installable here" > .bench/torchoptics/UNAVAILABLE
fi
echo "bench environments ready under .bench/"
