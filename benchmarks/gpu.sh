#!/usr/bin/env bash
# GPU checks in one go, on a bare GPU host's own Python (numpy, CuPy; no Ray, MLflow or Hydra):
# the GPU tests of optics/ and the chip-processes benchmark (1, 2, 4, 8 chips sharing the GPU).
#   bash benchmarks/gpu.sh            (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.
python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_propagation.py tests/test_ffm.py \
  tests/test_operators.py -o addopts="" 2>&1 | tail -5 || python3 - <<'PY'
# no pytest on the host: run the GPU checks directly
import tests.test_gpu as t, numpy as np
rng = np.random.default_rng(0)
t.test_cupy_propagation_matches_numpy_and_is_symmetric(rng)
for prec, tol in (("complex64", 1e-4), ("complex128", 1e-10)):
    t.test_cupy_ffm_gradient_matches_numpy(rng, prec, tol)
t.test_cupy_noisy_step_runs_and_is_keyed(rng)
print("GPU checks passed")
PY
python3 benchmarks/chip_processes.py --backend cupy --chips 1 2 4 8 --batch 64 --steps 20
