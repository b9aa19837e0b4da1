"""B1's cases and contenders (benchmarks/b1_step.py describes them): the case geometries, the
batches, the camera draws of one noisy step, and one case's timed callables (``step(rep)``),
built in the order they are timed. Needs only numpy and ``optics`` (torch and CuPy come in
through the arguments), so it runs on a bare GPU host."""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass

import numpy as np
from torch_net import TorchNet

from optics import (
    DigitalTwin,
    Geometry,
    MeasurementSpec,
    Objective,
    PassKey,
    SimulatedChip,
    forward_only_step,
    get_backend,
)
from optics.core.measurement import Tap, keyed_normals, keyed_poisson
from optics.core.propagation import SamplingWarning

WAVELENGTH = 532e-9
CASES = {  # the B1 cases of docs/performance.md
    "ref": dict(n=200, pitch=36e-6, distance=0.3, n_layers=5, pad=None, batch={"cpu": 64, "gpu": 64}),
    "mid": dict(n=256, pitch=8e-6, distance=0.05, n_layers=5, pad=0, batch={"cpu": 32, "gpu": 256}),
    "big": dict(n=512, pitch=8e-6, distance=0.05, n_layers=10, pad=0, batch={"gpu": 256}),
}
DEFAULT_CASES = {"cpu": ["ref", "mid"], "gpu": ["ref", "mid", "big"]}
#: every row ``--contenders`` can pick, the step users run first (the FFT probes always run)
CONTENDERS = ("ours-noisy", "ours-chip-off", "torch-noisy", "noise-floor", "ours", "ours-cached", "ours-lean", "torch")
CHIP_SEED = 1
warnings.filterwarnings("ignore", category=SamplingWarning)  # mid and big wrap around by design


def geometry(case: str) -> Geometry:
    """The case's chip (mid and big are unpadded on purpose: kernel benchmarks, not optics)."""
    c = CASES[case]
    return Geometry(
        n=c["n"],
        pitch=c["pitch"],
        wavelength=WAVELENGTH,
        distance=c["distance"],
        n_layers=c["n_layers"],
        n_classes=10,
        detector_px=20,
        object_px=min(96, c["n"]),
        pad=c["pad"],
        force_padding=c["pad"] == 0,
    )


# -- data ----------------------------------------------------------------------------------
def batches(g: Geometry, batch: int, count: int, seed: int = 0):
    """``count`` batches (x (B, n, n) float32 unit power, labels (B,)): digits, or synthetic blobs."""
    try:
        from optics.core.data import encode_amplitude, load_digits_split

        split = load_digits_split(0)
        images, labels, source = split.train.images, split.train.labels, "sklearn digits"
        x_all = encode_amplitude(images[: batch * count] if len(images) >= batch * count else images, g.n, g.object_px)
    except ImportError:  # bare GPU host: no scikit-learn / SciPy
        rng = np.random.default_rng(seed)
        imgs = rng.random((batch * count, 8, 8)) * (rng.random((batch * count, 8, 8)) > 0.5)
        labels = rng.integers(0, 10, batch * count)
        rep = max(1, g.object_px // 8)
        up = np.kron(imgs, np.ones((1, rep, rep)))
        x_all = np.zeros((len(imgs), g.n, g.n), np.float32)
        o = (g.n - up.shape[1]) // 2
        x_all[:, o : o + up.shape[1], o : o + up.shape[2]] = up
        x_all /= np.sqrt((x_all**2).sum(axis=(1, 2), keepdims=True)) + 1e-30
        source = "synthetic 8x8 blobs (no scikit-learn here)"
    out = []
    for i in range(count):
        idx = np.arange(i * batch, (i + 1) * batch) % len(x_all)
        out.append((np.ascontiguousarray(x_all[idx], dtype=np.float32), np.asarray(labels)[idx].astype(np.int64)))
    return out, source


def is_step(name: str) -> bool:
    """A training-step row (timed against the FFT floor, its peak memory measured); not a probe."""
    return not name.startswith("fft-") and name != "noise-floor"


# -- the camera noise of one noisy step --------------------------------------------------------
def noise_draws(g: Geometry, batch: int) -> dict:
    """What one noisy ``SimulatedChip`` step draws (model ``monitors``): keyed normals and Poisson counts."""
    taps = 2 * g.n_layers + 1  # data pass: L layers + the detector field; error pass: L layers
    return {"normals": batch * (taps * g.n * g.n * 2 + g.n * g.n + 2), "poisson": batch * g.n * g.n}


def noise_floor_step(g: Geometry, batch: int, lam, backend, seed: int):
    """``step(round)``: one noisy step's camera draws in bulk with our keyed generator (:func:`noise_draws`),
    on ``backend``'s workers; ``lam`` (B, n, n) float64 the shot noise's means."""
    samples = tuple(range(batch))
    field = (g.n, g.n, 2)

    def step(round_index):
        data = PassKey(round_index, "data", samples, seed)
        error = PassKey(round_index, "error", samples, seed)
        for key, taps in ((data, [*range(g.n_layers), Tap.DETECTOR]), (error, range(g.n_layers))):
            keyed_normals(key, Tap.REFERENCE, (1,), backend)
            for tap in taps:
                keyed_normals(key, tap, field, backend)
        keyed_poisson(data, Tap.SHOT, lam, backend)
        keyed_normals(data, Tap.READ, (g.n, g.n), backend)

    return step


# -- one case's contenders ---------------------------------------------------------------------
@dataclass
class Bench:
    """One case's shared state: the chip geometry, the benchmark's backend and phases, the
    noise-free twins (plain and with the input-plane cache), the batches (host and device)."""

    case: str
    args: argparse.Namespace
    g: Geometry
    batch: int
    backend: object
    twin: DigitalTwin
    n_pad: int
    phases: np.ndarray
    cached: DigitalTwin
    data: list
    source: str
    dev_data: list
    objective: Objective
    rounds: int = 0  # the keyed noise's round, one more per noisy step or noise-floor call


def _backend(name: str, args) -> object:
    return get_backend(name, "complex64", fft_threads=args.threads, fft_planner=args.planner)


def setup(case: str, args) -> Bench:
    """The case's geometry, backend, noise-free twins (programmed with the benchmark's phases) and batches."""
    g = geometry(case)
    batch = args.batch or CASES[case]["batch"][args.device]
    backend = _backend("cupy" if args.device == "gpu" else "numpy", args)
    twin = DigitalTwin(g, backend)
    n_pad = twin.props[-1].n_pad
    phases = np.random.default_rng(1).uniform(0, 2 * np.pi, (g.n_layers, g.n, g.n))
    twin.program(phases)
    cached = DigitalTwin(g, _backend(backend.name, args), input_cache=args.cache_batches * batch)
    cached.program(phases)
    n_batches = args.warmup + args.reps
    data, source = batches(g, batch, min(n_batches, args.cache_batches))
    dev_data = [(backend.asarray(x), y) for x, y in data]
    return Bench(case, args, g, batch, backend, twin, n_pad, phases, cached, data, source, dev_data, Objective())


def ours_step(b: Bench, chip, per_pass=None):
    """``step(i)``: :func:`forward_only_step` on ``chip`` for batch ``i`` (cycled), a fresh round each call."""

    def step(i):
        x, y = b.dev_data[i % len(b.dev_data)]
        b.rounds += 1
        return forward_only_step(chip, x, y, b.objective, b.rounds, range(b.batch), per_pass)

    return step


def make_chip(b: Bench, measurement=None) -> SimulatedChip:
    """The case's SimulatedChip (seed CHIP_SEED, the benchmark's phases) on its own backend."""
    c = SimulatedChip(b.g, measurement=measurement, seed=CHIP_SEED, backend=_backend(b.backend.name, b.args))
    c.program(b.phases)
    return c


def noise_floor(b: Bench, noisy: SimulatedChip):
    """The ``noise-floor`` row: one step's draws, the shot noise's means from ``noisy``'s true detector intensity."""
    intensity = noisy.true_data_pass(b.dev_data[0][0]).intensity
    lam = np.asarray(b.backend.to_numpy(intensity), np.float64) * noisy.measurement.photoelectrons
    floor = noise_floor_step(b.g, b.batch, lam, b.backend, CHIP_SEED)

    def step(i):
        b.rounds += 1
        floor(b.rounds)

    return step


def ours_contenders(b: Bench) -> tuple[dict, SimulatedChip | None]:
    """Our rows picked by ``--contenders``, and the noisy chip (ours-noisy's, and the camera
    torch-noisy and the noise floor draw for; None where none of them runs)."""
    picked = b.args.contenders
    contenders = {}
    noisy = make_chip(b) if {"ours-noisy", "torch-noisy", "noise-floor"} & set(picked) else None
    if "ours-noisy" in picked:
        contenders["ours-noisy"] = ours_step(b, noisy)
    if "ours-chip-off" in picked:
        contenders["ours-chip-off"] = ours_step(b, make_chip(b, MeasurementSpec.off()))
    if "noise-floor" in picked:
        contenders["noise-floor"] = noise_floor(b, noisy)
    if "ours" in picked:
        contenders["ours"] = ours_step(b, b.twin)
    if "ours-lean" in picked:  # memory-lean mode: a quarter of the batch per pass
        contenders["ours-lean"] = ours_step(b, b.twin, max(1, b.batch // 4))
    if "ours-cached" in picked:
        contenders["ours-cached"] = ours_step(b, b.cached)
    return contenders, noisy


def torch_contenders(b: Bench, torch, noisy: SimulatedChip | None) -> tuple[dict, float | None]:
    """torch's rows picked by ``--contenders`` (none without torch), and the relative error of
    torch's phase gradient against ours on the first batch (None where no torch row runs)."""
    picked = b.args.contenders
    if torch is None or not {"torch", "torch-noisy"} & set(picked):
        return {}, None
    contenders = {}
    tdev = "cuda" if b.args.device == "gpu" else "cpu"
    masks = b.backend.to_numpy(b.twin.detectors.masks)
    tnet = TorchNet(torch, b.g, b.n_pad, b.phases, masks, b.objective.temperature, tdev)
    t_data = [(torch.as_tensor(x, device=tdev).to(torch.complex64), torch.as_tensor(y, device=tdev)) for x, y in b.data]
    if "torch-noisy" in picked:
        tnet.set_noise(noisy.measurement, seed=CHIP_SEED)
        contenders["torch-noisy"] = lambda i: tnet.noisy_step(*t_data[i % len(t_data)])
    if "torch" in picked:
        contenders["torch"] = lambda i: tnet.step(*t_data[i % len(t_data)])
    # the two compute the same gradient (first batch)
    g_ours = forward_only_step(b.twin, b.dev_data[0][0], b.data[0][1], b.objective, 0, range(b.batch)).grad_phase
    tnet.step(*t_data[0])
    g_t = tnet.phi.grad.detach().cpu().numpy().astype(np.float64)
    return contenders, float(np.linalg.norm(g_ours - g_t) / np.linalg.norm(g_t))


def fft_probes(b: Bench, torch) -> dict:
    """One batched in-place 2-D FFT of the padded size: ours, ours per block (CPU), torch's."""
    backend, batch, n_pad = b.backend, b.batch, b.n_pad
    shape = (batch, n_pad, n_pad)
    buf = backend.workspace(shape)
    buf[...] = 1
    probes = {"fft-ours": lambda i: backend.fft2_(buf)}
    if b.args.device == "cpu":  # the same FFTs as the step runs them: per block, one thread each

        def fft_blocked(i):
            backend.map_blocks(
                lambda block, w: backend.fft2_(backend.workspace((block.stop - block.start, n_pad, n_pad), w)),
                batch,
                n_pad,
            )

        probes["fft-ours-blocked"] = fft_blocked
    if torch is not None:
        tbuf = torch.ones(shape, dtype=torch.complex64, device="cuda" if b.args.device == "gpu" else "cpu")
        probes["fft-torch"] = lambda i: torch.fft.fft2(tbuf)
    return probes
