"""What training a diffractive chip costs: hops per sample, one hop timed, a projected run.

A training sample is ``2 L + 1`` hops (``L + 1`` in the data pass, ``L`` in the error pass;
``docs/design.md`` section 1.7), an inference sample ``L + 1``; a hop is two FFTs of
``n_pad x n_pad`` and a product with the transfer function. The rest of a step (padding and
cropping, layer products, taps, camera noise, gradients) scales with the same pixels, so one
step costs about ``k (2 L + 1) t_hop`` per sample, with ``k`` measured once per machine
(``benchmarks/xue2024_cost.py``; ``HOP_OVERHEAD`` is its value on the machine of
``docs/results/xue2024_deep.md``).
"""

from __future__ import annotations

import math
import time

# k: a step's time over (2 L + 1) bare hops, 1.5-1.6 measured at full size on a 2-core EPYC VM (docs/results)
HOP_OVERHEAD = 1.5


def training_hops(n_layers: int) -> int:
    """Hops per training sample: the data pass's ``L + 1`` and the error pass's ``L``."""
    return 2 * n_layers + 1


def hop_seconds(backend, n_pad: int, repeats: int = 10) -> float:
    """Seconds of one hop (FFT, product, inverse FFT) of one sample on ``backend``, best of ``repeats``."""
    buf = backend.workspace((1, n_pad, n_pad))
    kernel = backend.xp.full((n_pad, n_pad), 1.0 / n_pad**2, dtype=backend.complex_dtype)  # the unnormalised FFTs' 1/N
    buf[...] = 1.0
    backend.propagate_(buf, kernel)  # plans
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        backend.propagate_(buf, kernel)
        best = min(best, time.perf_counter() - t0)
    return best


def projected_training(
    geometry,
    step_s_per_sample: float,
    train_samples: int = 10_000,
    epochs: int = 200,
    batch: int = 10,
    eval_samples: int = 200,
    fidelity_every: int = 10,
) -> dict:
    """Seconds of a training run at ``step_s_per_sample``: the training steps, a gradient-fidelity
    check (one more step's work on the batch) every ``fidelity_every`` rounds, and each epoch's
    validation and test inference (``L + 1`` of a step's ``2 L + 1`` hops). Defaults: Xue et al.
    2024's deep network (10,000 Fashion-MNIST images, 200 epochs, batch 10, 100 + 100 evaluated)."""
    hops = training_hops(geometry.n_layers)
    rounds = epochs * math.ceil(train_samples / batch)
    train_s = epochs * train_samples * step_s_per_sample
    fidelity_s = (rounds // fidelity_every if fidelity_every else 0) * batch * step_s_per_sample
    eval_s = epochs * eval_samples * step_s_per_sample * (geometry.n_layers + 1) / hops
    total = train_s + fidelity_s + eval_s
    return {"rounds": rounds, "train_s": train_s, "fidelity_s": fidelity_s, "eval_s": eval_s, "total_s": total}
