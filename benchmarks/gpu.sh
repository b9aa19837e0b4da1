#!/usr/bin/env bash
# GPU checks in one go, on a bare GPU host's own Python (numpy, CuPy, torch; no Ray, MLflow or Hydra;
# SciPy and scikit-learn optional). About 3-4 minutes on an H200:
#   1. the GPU tests (tests/test_gpu.py, plus the NumPy-side FFM/propagation tests when pytest is there);
#   2. B1 on the GPU: ref, mid, big; ours vs torch autograd vs the FFT floor, interleaved
#      (benchmarks/results/b1-<host>-gpu.json and b1-gpu.md, table printed);
#   3. several chip processes sharing the GPU (needs SciPy and scikit-learn; skipped without them).
#   bash benchmarks/gpu.sh            (from anywhere; PYTHON=... to pick the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.
PY=${PYTHON:-python3}
status=0
echo "== GPU tests"
if "$PY" -c "import pytest" 2>/dev/null; then
  timeout 240 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" tests/test_gpu.py 2>&1 | tail -15 || status=1
else  # no pytest on the host: run the GPU checks directly
  timeout 240 "$PY" - <<'PY' || status=1
import importlib.util
import numpy as np
import tests.test_gpu as t
rng = lambda: np.random.default_rng(1234)
t.test_cupy_propagation_matches_numpy_and_is_symmetric(rng())
if importlib.util.find_spec("scipy"):  # simulated chips draw their imperfections with SciPy
    for prec, tol in (("complex64", 1e-4), ("complex128", 1e-10)):
        t.test_cupy_ffm_gradient_matches_numpy(rng(), prec, tol)
    t.test_cupy_noisy_step_runs_and_is_keyed(rng())
else:
    print("no SciPy: the simulated-chip GPU checks are skipped")
t.test_cupy_unpadded_twin_and_input_cache_match_numpy(rng())
t.test_cupy_noise_streams_equal_numpy(rng())
for shape in ((3, 5, 7, 9), (2, 4, 16)):
    t.test_cupy_phase_gradient_kernel_matches_einsum(rng(), shape)
print("GPU checks passed")
PY
fi
echo "== B1 on the GPU (ref, mid, big)"
# the noisy rows build a SimulatedChip, whose imperfections need SciPy: without it, the noise-free rows
if "$PY" -c "import scipy" 2>/dev/null; then ROWS=(); else ROWS=(--contenders ours ours-cached ours-lean torch); fi
timeout 300 "$PY" benchmarks/b1_step.py --device gpu --reps 15 --warmup 5 "${ROWS[@]}" || status=1
echo "== chip processes sharing the GPU"
if "$PY" -c "import scipy, sklearn" 2>/dev/null; then
  timeout 240 "$PY" benchmarks/chip_processes.py --backend cupy --chips 1 2 4 8 --batch 64 --steps 20 || status=1
else
  echo "skipped: SciPy / scikit-learn not installed here (the simulated chips draw their imperfections with them)"
fi
exit $status
