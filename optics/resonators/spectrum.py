"""The digital half of the exceptional-point objective: fit a spectrum, its discriminant.

Frequencies ``w`` and eigenvalues are in units of the reference linewidth ``gamma0``
(see :mod:`optics.resonators.exceptional`). A chain of N resonators with ports at its ends
has ``t(w) = c / q(w)``, ``q(w) = w^N + a_{N-1} w^{N-1} + ... + a_0`` (monic), fitted by
Levy's linearised least squares weighted by ``|t_k|``::

    min_{a, c} sum_k |t_k|^2 |t_k q(w_k) - c|^2

The residual is the discriminant ``D = disc(q) = prod_{i<j} (lambda_i - lambda_j)^2``, zero
at an exceptional point; both carry exact directional derivatives for the chain rule
``dD/dp = (dD/da)(da/dt)(dt/dp)``.
"""

from __future__ import annotations

import numpy as np


def fit_spectrum(freqs, t, order: int, dt=None):
    """Fit ``t(w) = c / q(w)``, ``q`` monic of degree ``order``; returns ``(a, c, da)``.

    ``a`` (order,) ascending coefficients ``a_0..a_{N-1}``; ``da`` (P, order) is the exact
    derivative of the fit along each column of ``dt`` (K, P), or None."""
    w = check_freqs(freqs, order + 1)
    t = np.asarray(t, np.complex128)
    if t.shape != w.shape or not np.isfinite(t).all():
        raise ValueError(f"t must be {w.size} finite complex values (one per probe), got shape {t.shape}")
    powers = w[:, None] ** np.arange(order + 1)  # (K, N + 1)
    wt = np.abs(t)

    def system(tt, ww):
        a_mat = np.concatenate([(ww * tt)[:, None] * powers[:, :-1], -ww[:, None]], axis=1)
        return a_mat, -ww * tt * powers[:, -1]

    a_mat, y = system(t, wt)
    x = np.linalg.lstsq(a_mat, y, rcond=None)[0]
    if dt is None:
        return x[:-1], x[-1], None
    dt = np.asarray(dt, np.complex128)
    dw = (t.conj()[:, None] * dt).real / wt[:, None]
    resid, gram = y - a_mat @ x, a_mat.conj().T @ a_mat
    da = np.empty((dt.shape[1], order + 1), np.complex128)
    for i in range(dt.shape[1]):  # directional derivative of the least-squares solution
        d_a = np.concatenate([(dw[:, i] * t + wt * dt[:, i])[:, None] * powers[:, :-1], -dw[:, i : i + 1]], 1)
        d_y = -(dw[:, i] * t + wt * dt[:, i]) * powers[:, -1]
        da[i] = np.linalg.solve(gram, d_a.conj().T @ resid + a_mat.conj().T @ (d_y - d_a @ x))
    return x[:-1], x[-1], da[:, :-1]


def discriminant(a, da=None):
    """``D = disc(q)`` of monic ``q`` (ascending ``a``) and ``dD = (dD/da) da`` (P,) or None.

    ``D = (-1)^{N(N-1)/2} det S`` with ``S`` the Sylvester matrix of ``q`` and ``q'``;
    ``dD`` via ``d det S = tr(adj(S) dS)``, the adjugate from the SVD (exact at ``D = 0``)."""
    a = np.asarray(a, np.complex128)
    n, sign = a.size, (-1) ** (a.size * (a.size - 1) // 2)
    s = _sylvester(np.concatenate([[1.0], a[::-1]]))
    uu, sv, vh = np.linalg.svd(s)
    phase = np.linalg.det(uu) * np.linalg.det(vh)
    d = sign * phase * np.prod(sv)
    if da is None:
        return d, None
    cof = np.array([np.prod(np.delete(sv, i)) for i in range(sv.size)])
    adj = phase * (vh.conj().T * cof) @ uu.conj().T
    grads = np.array([np.trace(adj @ _sylvester(np.eye(n + 1)[n - m])) for m in range(n)])
    return d, sign * np.asarray(da, np.complex128) @ grads


def _sylvester(c):
    """Sylvester matrix (2n - 1, 2n - 1) of ``q`` (descending coefficients ``c``) and ``q'``.

    Linear in ``c``, so ``dS/da_m`` is the matrix built from the unit coefficient vector."""
    n = c.size - 1
    dc = c[:-1] * np.arange(n, 0, -1)
    s = np.zeros((2 * n - 1, 2 * n - 1), np.complex128)
    for r in range(n - 1):
        s[r, r : r + n + 1] = c
    for r in range(n):
        s[n - 1 + r, r : r + n] = dc
    return s


def eigenvalues_from_fit(a) -> np.ndarray:
    """Roots of ``q`` (the poles of ``t``), sorted by real part."""
    roots = np.roots(np.concatenate([[1.0], np.asarray(a)[::-1]]))
    return roots[np.argsort(roots.real)]


def splitting(eigs) -> float:
    """Smallest pairwise distance ``|lambda_i - lambda_j|`` (gamma0)."""
    e = np.asarray(eigs)
    return float(np.min(np.abs(e[:, None] - e[None, :])[np.triu_indices(e.size, 1)]))


def check_freqs(freqs, minimum: int) -> np.ndarray:
    w = np.asarray(freqs, dtype=np.float64)
    if w.ndim != 1 or w.size < minimum or not np.isfinite(w).all() or np.unique(w).size != w.size:
        raise ValueError(f"probe_frequencies must be >= {minimum} distinct finite numbers (gamma0), got {brief(freqs)}")
    return w


def brief(x) -> str:
    """One-line description of a bad array argument."""
    try:
        a = np.asarray(x, dtype=object).ravel()
    except Exception:  # noqa: BLE001  (anything unconvertible: show its type)
        return type(x).__name__
    return f"{a[:6].tolist()}{' ...' if a.size > 6 else ''} ({a.size} values)"
