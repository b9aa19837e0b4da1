"""B1's torch autograd reference: the diffractive network ``optics`` computes, written in torch
(what diffractive-network libraries do). torch is a benchmark-only dependency."""

from __future__ import annotations

import numpy as np

from optics import Geometry
from optics.core.propagation import transfer_function


class TorchNet:
    """The same diffractive network in torch: pad -> fft2 -> x H -> ifft2 -> crop per hop."""

    def __init__(
        self, torch, g: Geometry, n_pad: int, phases: np.ndarray, masks: np.ndarray, temperature: float, device: str
    ):
        self.torch, self.g, self.n_pad, self.temperature = torch, g, n_pad, temperature
        h = transfer_function(n_pad, g.pitch, g.wavelength, g.distance)
        self.H = torch.as_tensor(h.astype(np.complex64), device=device)
        self.phi = torch.nn.Parameter(torch.as_tensor(phases.astype(np.float32), device=device))
        self.masks = torch.as_tensor(masks.astype(np.float32), device=device)
        self.o = (n_pad - g.n) // 2

    def prop(self, u):
        torch, F = self.torch, self.torch.nn.functional
        n, o, p = self.g.n, self.o, self.n_pad - self.g.n - self.o
        if self.n_pad > n:
            u = F.pad(u, (o, p, o, p))
        u = torch.fft.ifft2(torch.fft.fft2(u) * self.H)
        return u[..., o : o + n, o : o + n] if self.n_pad > n else u

    def loss(self, x, y):
        torch = self.torch
        a = self.prop(x)
        t = torch.exp(1j * self.phi)
        for layer in range(self.g.n_layers):
            a = self.prop(a * t[layer])
        intensity = a.real**2 + a.imag**2
        scores = intensity.reshape(intensity.shape[0], -1) @ self.masks
        return torch.nn.functional.cross_entropy(scores / self.temperature, y)

    def step(self, x, y):
        self.phi.grad = None
        loss = self.loss(x, y)
        loss.backward()
        return loss
