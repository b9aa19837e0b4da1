#!/usr/bin/env bash
# B1 against the peers on the ref task (2-core CPU): sets up throwaway environments for
# LightRidge 0.2.2 and torchoptics 1.0.2 (benchmarks/setup_bench_env.sh peers), runs each at its
# defaults and at matched settings (our 264^2 FFT, float32), interleaved with our step in the same
# process, then writes benchmarks/results/peers-<host>.json and peers-cpu.md.
#   bash benchmarks/peers.sh                 (torchoptics at its defaults: 1 warm-up + 2 timed
#                                             steps of about a minute and 10 GB each; SKIP_SLOW=1 skips it)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=. OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
bash benchmarks/setup_bench_env.sh peers
tmp=$(mktemp -d)
run() {  # run LIB MODE [ARGS...]
  local lib=$1 mode=$2; shift 2
  if [ -f ".bench/$lib/UNAVAILABLE" ]; then cp ".bench/$lib/UNAVAILABLE" "$tmp/$lib-$mode.unavailable"; return; fi
  ".bench/$lib/bin/python" benchmarks/peers.py "$lib" "$mode" --out "$tmp/$lib-$mode.json" "$@" \
    || { echo "$lib $mode failed (exit $?)" > "$tmp/$lib-$mode.unavailable"; rm -f "$tmp/$lib-$mode.json"; return; }
  # peak memory per step: an untimed run whose large blocks come from mmap (see b1_step.py)
  MALLOC_MMAP_THRESHOLD_=1048576 ".bench/$lib/bin/python" benchmarks/peers.py "$lib" "$mode" \
    --out "$tmp/$lib-$mode.mem" "$@" || true
}
run lightridge defaults
run lightridge matched
run torchoptics matched
if [ "${SKIP_SLOW:-0}" != 1 ]; then run torchoptics defaults --reps 2 --warmup 1; fi
.bench/venv/bin/python benchmarks/peers_report.py "$tmp"
