"""Datasets and amplitude encoding.

- ``load_digits_split``: scikit-learn's bundled handwritten digits (1,797 images of
  8 x 8, no download), a seeded stratified train / validation / test split.
- ``load_idx``: MNIST / Fashion-MNIST IDX files from a user-given folder (gzip or raw),
  with one-line errors for missing, truncated or mismatched files.
- ``encode_amplitude``: images -> (B, n, n) real input fields: bilinear upsampling to
  ``object_px``, centred on the grid, amplitude = pixel value, scaled to unit power per
  sample (``sum |x|^2 = 1``, the normalisation the measurement model counts photons in).
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Images (N, h, w) float in [0, 1], labels (N,) int64, and global sample ids (N,)."""

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
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0, 1) "
                         "and sum to < 1")
    ids = np.arange(len(labels))
    rest, test = train_test_split(ids, test_size=test_fraction, random_state=seed, stratify=labels)
    train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction),
                                  random_state=seed, stratify=labels[rest])
    make = lambda idx: Dataset(images[idx], labels[idx], idx)  # noqa: E731
    return Split(make(np.sort(train)), make(np.sort(val)), make(np.sort(test)), int(labels.max()) + 1)


def load_digits_split(seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> Split:
    """scikit-learn digits (values 0..16 scaled to [0, 1]), stratified and seeded."""
    from sklearn.datasets import load_digits  # noqa: PLC0415

    d = load_digits()
    return _split(d.images / 16.0, d.target.astype(np.int64), seed, val_fraction, test_fraction)


def encode_amplitude(images: np.ndarray, n: int, object_px: int, dtype=np.float32) -> np.ndarray:
    """Amplitude-encode (B, h, w) images in [0, 1] on an n x n grid; unit power per sample."""
    from scipy.ndimage import zoom  # noqa: PLC0415

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
    out[:, o:o + up.shape[1], o:o + up.shape[2]] = up
    power = np.sqrt((out**2).sum(axis=(1, 2), keepdims=True))
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
        raise ValueError(f"{path}: truncated or padded: {len(raw) - header} data bytes, expected {expected} "
                         f"for shape {dims}; download the file again")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find(folder: str, stem: str) -> str:
    for name in (stem, stem + ".gz"):
        p = os.path.join(folder, name)
        if os.path.isfile(p):
            return p
    raise ValueError(f"{stem}[.gz] not found in {folder}; put the MNIST/Fashion-MNIST IDX files there")


def load_idx(folder: str, seed: int = 0, val_fraction: float = 0.1) -> Split:
    """MNIST-format folder (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-...).

    The official test set is the test split; validation is a seeded stratified part of
    the training set. Sample ids: training 0..59999, test 60000.. (they key the noise).
    """
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

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
    return Split(Dataset(xi[tr], yi[tr], tr), Dataset(xi[va], yi[va], va), Dataset(xt, yt, test_ids), n_classes)
