"""Datasets and amplitude encoding.

- ``load_digits_split``: scikit-learn's bundled handwritten digits (1,797 images of
  8 x 8, no download), a seeded stratified train / validation / test split.
- ``load_idx``: MNIST / Fashion-MNIST IDX files from a user-given folder (gzip or raw),
  with one-line errors for missing, truncated or mismatched files.
- ``encode_amplitude``: images -> (B, n, n) real input fields: bilinear upsampling to
  ``object_px``, centred on the grid, amplitude = pixel value, scaled to unit power per
  sample (``sum |x|^2 = 1``, the normalisation the measurement model counts photons in).
- For MZI meshes (:mod:`optics.mesh.mzi`): ``load_iris_split`` (scikit-learn's bundled iris,
  150 samples of 4 features in cm), ``reduce_features`` (z-scores, PCA or block averages
  to a few real features, fitted on the training part only) and ``encode_modes`` (feature
  vectors -> (B, N) mode amplitudes with unit power per sample).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Images (N, h, w) float in [0, 1] (or feature vectors (N, d)), labels (N,) int64, and
    global sample ids (N,)."""

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Split:
    train: Dataset
    val: Dataset
    test: Dataset
    n_classes: int


def _split(images, labels, seed: int, val_fraction: float, test_fraction: float) -> Split:
    from sklearn.model_selection import train_test_split

    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0, 1) and sum to < 1"
        )
    ids = np.arange(len(labels))
    rest, test = train_test_split(ids, test_size=test_fraction, random_state=seed, stratify=labels)
    train, val = train_test_split(
        rest, test_size=val_fraction / (1 - test_fraction), random_state=seed, stratify=labels[rest]
    )
    make = lambda idx: Dataset(images[idx], labels[idx], idx)  # noqa: E731
    return Split(make(np.sort(train)), make(np.sort(val)), make(np.sort(test)), int(labels.max()) + 1)


def load_digits_split(seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2, per_class=None) -> Split:
    """scikit-learn digits (values 0..16 scaled to [0, 1]), stratified and seeded; ``per_class``
    as in :func:`load_idx`."""
    from sklearn.datasets import load_digits

    d = load_digits()
    split = _split(d.images / 16.0, d.target.astype(np.int64), seed, val_fraction, test_fraction)
    return keep_per_class(split, per_class)


def encode_amplitude(images: np.ndarray, n: int, object_px: int, dtype=np.float32) -> np.ndarray:
    """Amplitude-encode (B, h, w) images in [0, 1] on an n x n grid; unit power per sample."""
    from scipy.ndimage import zoom

    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3:
        raise ValueError(f"images has shape {images.shape}, expected (batch, height, width)")
    if not np.all(np.isfinite(images)):
        raise ValueError("images contains NaN or inf; clean the input before encoding")
    if object_px > n:
        raise ValueError(f"object_px={object_px} does not fit the grid n={n}; use object_px <= n")
    b, h, w = images.shape
    up = zoom(images, (1, object_px / h, object_px / w), order=1, grid_mode=True, mode="nearest")
    up = np.clip(up, 0.0, None)
    out = np.zeros((b, n, n), dtype=np.float64)
    o = (n - object_px) // 2
    out[:, o : o + up.shape[1], o : o + up.shape[2]] = up
    power = np.sqrt((out**2).sum(axis=(1, 2), keepdims=True))
    return (out / np.maximum(power, 1e-30)).astype(dtype)


def load_iris_split(seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2) -> Split:
    """scikit-learn iris: features (150, 4) in cm (sepal and petal length, width), 3 classes,
    stratified and seeded (default 90 / 30 / 30)."""
    from sklearn.datasets import load_iris

    d = load_iris()
    return _split(d.data.astype(np.float64), d.target.astype(np.int64), seed, val_fraction, test_fraction)


REDUCTIONS = ("standardise", "pca", "block")


def reduce_features(split: Split, n_features: int, method: str = "pca") -> Split:
    """Each sample -> ``n_features`` real values, with statistics from ``split.train`` only.

    ``standardise``: z-scores of the d = ``n_features`` raw features. ``pca``: the top
    ``n_features`` principal components of the centred training samples, each scaled to
    unit variance on the training part (whitened). ``block``: (h, w) images averaged over a
    k x k grid of blocks, ``n_features = k^2`` (non-negative, not centred).
    """
    if method not in REDUCTIONS:
        raise ValueError(f"method must be one of {REDUCTIONS}, got {method!r}")
    flat = lambda ds: ds.images.reshape(len(ds), -1).astype(np.float64)  # noqa: E731
    train = flat(split.train)
    if method == "block":
        transform = _block_transform(split.train.images.shape[1:], n_features)
    else:
        transform = _fitted_transform(train, n_features, method)
    make = lambda ds: Dataset(transform(flat(ds)), ds.labels, ds.ids)  # noqa: E731
    return Split(make(split.train), make(split.val), make(split.test), split.n_classes)


def _fitted_transform(train: np.ndarray, n_features: int, method: str):
    d = train.shape[1]
    if method == "standardise" and n_features != d:
        raise ValueError(f"n_features={n_features} must equal the {d} raw features for 'standardise'; use 'pca'")
    if not isinstance(n_features, (int, np.integer)) or not 1 <= n_features <= min(d, train.shape[0]):
        raise ValueError(f"n_features must be an integer in 1..{min(d, train.shape[0])}, got {n_features!r}")
    mean = train.mean(axis=0)
    if method == "standardise":
        basis = np.eye(d)
    else:
        basis = np.linalg.svd(train - mean, full_matrices=False)[2][:n_features].T  # (d, n_features)
    std = ((train - mean) @ basis).std(axis=0)
    scale = np.where(std > 0, std, 1.0)
    return lambda x: ((x - mean) @ basis) / scale


def _block_transform(shape: tuple, n_features: int):
    k = math.isqrt(n_features) if isinstance(n_features, (int, np.integer)) and n_features > 0 else 0
    if len(shape) != 2 or k * k != n_features or shape[0] % k or shape[1] % k:
        raise ValueError(
            f"'block' needs images (h, w) divisible into k x k blocks with n_features = k^2, "
            f"got n_features={n_features!r} for samples of shape {shape}"
        )
    h, w = shape
    return lambda x: x.reshape(-1, k, h // k, k, w // k).mean(axis=(2, 4)).reshape(-1, n_features)


def encode_modes(features: np.ndarray, n_modes: int, bias: float = 1.0, dtype=np.float64) -> np.ndarray:
    """Feature vectors (B, d) as (B, n_modes) real mode amplitudes, unit power per sample.

    Mode j < d carries feature j; with ``bias`` != 0 mode d carries the constant ``bias``
    (a reference); the rest are dark; then each row is scaled to ``sum |x|^2 = 1``.
    Signed values are fine: a coherent source array sets each mode's amplitude and
    phase, and a negative amplitude is a phase of pi. The reference is needed for centred
    features: detected intensities ``|m . x|^2`` cannot tell ``x`` from ``-x``, and the
    reference adds the linear term ``2 bias Re(conj(m_d) m . x)``. (The scaling drops
    each vector's norm; only its direction reaches the mesh.)
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features has shape {x.shape}, expected (batch, n_features)")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contains NaN or inf; clean the input before encoding")
    if not np.isfinite(bias):
        raise ValueError(f"bias must be a finite number, got {bias!r}")
    used = x.shape[1] + (bias != 0)
    if isinstance(n_modes, bool) or not isinstance(n_modes, (int, np.integer)) or used > n_modes:
        raise ValueError(
            f"n_modes={n_modes!r} must be an integer >= {used} ({x.shape[1]} features"
            f"{' + the bias mode' if bias else ''}); reduce the features first (reduce_features)"
        )
    out = np.zeros((x.shape[0], int(n_modes)))
    out[:, : x.shape[1]] = x
    out[:, x.shape[1] : used] = bias
    power = np.sqrt((out**2).sum(axis=1, keepdims=True))
    return (out / np.maximum(power, 1e-30)).astype(dtype)


_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """One IDX file (raw or gzip) as an array; ``ValueError`` naming the file when malformed."""
    if not os.path.isfile(path):
        raise ValueError(f"IDX file not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: truncated or corrupt gzip ({exc}); download the file again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated header")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: truncated or padded: {len(raw) - header} data bytes, expected {expected} "
            f"for shape {dims}; download the file again"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find(folder: str, stem: str) -> str:
    for name in (stem, stem + ".gz"):
        p = os.path.join(folder, name)
        if os.path.isfile(p):
            return p
    raise ValueError(f"{stem}[.gz] not found in {folder}; put the MNIST/Fashion-MNIST IDX files there")


def load_idx(folder: str, seed: int = 0, val_fraction: float = 0.1, per_class=None) -> Split:
    """MNIST-format folder (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-...).

    The official test set is the test split; validation is a seeded stratified part of
    the training set. Sample ids: training 0..59999, test 60000.. (they key the noise).
    ``per_class`` ``(train, eval)``: keep the first ``train`` samples of each class of the
    training part and the first ``eval`` of each class of validation and test, in file order
    (Xue et al. 2024 take 1,000 and 10 per class of Fashion-MNIST).
    """
    from sklearn.model_selection import train_test_split

    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        imgs = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
        labs = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
        if imgs.ndim != 3 or labs.ndim != 1 or imgs.shape[0] != labs.shape[0]:
            raise ValueError(f"{folder}: {prefix} images {imgs.shape} and labels {labs.shape} do not match")
        parts[split] = (imgs.astype(np.float64) / 255.0, labs.astype(np.int64))
    (xi, yi), (xt, yt) = parts["train"], parts["test"]
    ids = np.arange(len(yi))
    tr, va = train_test_split(ids, test_size=val_fraction, random_state=seed, stratify=yi)
    tr, va = np.sort(tr), np.sort(va)
    test_ids = len(yi) + np.arange(len(yt))
    n_classes = int(max(yi.max(), yt.max())) + 1
    split = Split(Dataset(xi[tr], yi[tr], tr), Dataset(xi[va], yi[va], va), Dataset(xt, yt, test_ids), n_classes)
    return keep_per_class(split, per_class)


def keep_per_class(split: Split, per_class=None) -> Split:
    """``per_class`` ``(train, eval)``: the first ``train`` samples of each class of the training
    part, the first ``eval`` of each class of validation and test (None: the split as it is)."""
    if per_class is None:
        return split
    train_k, eval_k = (int(k) for k in per_class)
    parts = (first_per_class(split.train, train_k), first_per_class(split.val, eval_k))
    return Split(*parts, first_per_class(split.test, eval_k), split.n_classes)


def first_per_class(ds: Dataset, k: int) -> Dataset:
    """The first ``k`` samples of each class, in the dataset's order (all of a class with fewer)."""
    keep = np.zeros(len(ds), dtype=bool)
    for c in np.unique(ds.labels):
        keep[np.flatnonzero(ds.labels == c)[:k]] = True
    return Dataset(ds.images[keep], ds.labels[keep], ds.ids[keep])
