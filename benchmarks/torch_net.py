"""B1's torch autograd reference: the diffractive network ``optics`` computes, written in torch
(what diffractive-network libraries do), and the same camera noise a noisy ``SimulatedChip``
step draws, made with torch's generator. torch is a benchmark-only dependency."""

from __future__ import annotations

import math

import numpy as np

from optics import Geometry
from optics.core.holographic_noise import quadrature_noise_std
from optics.core.propagation import transfer_function


class TorchNet:
    """The same diffractive network in torch: pad -> fft2 -> x H -> ifft2 -> crop per hop."""

    def __init__(
        self, torch, g: Geometry, n_pad: int, phases: np.ndarray, masks: np.ndarray, temperature: float, device: str
    ):
        self.torch, self.g, self.n_pad, self.temperature, self.device = torch, g, n_pad, temperature, device
        h = transfer_function(n_pad, g.pitch, g.wavelength, g.distance)
        self.H = torch.as_tensor(h.astype(np.complex64), device=device)
        self.phi = torch.nn.Parameter(torch.as_tensor(phases.astype(np.float32), device=device))
        self.masks = torch.as_tensor(masks.astype(np.float32), device=device)
        self.o = (n_pad - g.n) // 2
        self.gen = None
        self._noise = {}  # (shape, dtype): the reused buffer of a tap's normals

    def prop(self, u):
        torch, F = self.torch, self.torch.nn.functional
        n, o, p = self.g.n, self.o, self.n_pad - self.g.n - self.o
        if self.n_pad > n:
            u = F.pad(u, (o, p, o, p))
        u = torch.fft.ifft2(torch.fft.fft2(u) * self.H)
        return u[..., o : o + n, o : o + n] if self.n_pad > n else u

    def loss(self, x, y, taps: dict | None = None):
        """The batch loss. ``taps`` (a dict): filled with the activations a noisy chip measures,
        ``data`` (the L layer inputs and the detector field), ``intensity`` and ``error`` (filled
        during ``backward``, in its order: the detector field's gradient, then those arriving at
        layers L..1)."""
        torch = self.torch
        a = self.prop(x)
        t = torch.exp(1j * self.phi)
        for layer in range(self.g.n_layers):
            m = a * t[layer]
            if taps is not None:
                taps["data"].append(a.detach())
                m.register_hook(taps["error"].append)
            a = self.prop(m)
        intensity = a.real**2 + a.imag**2
        if taps is not None:
            taps["data"].append(a.detach())
            taps["intensity"] = intensity.detach()
            a.register_hook(taps["error"].append)
        scores = intensity.reshape(intensity.shape[0], -1) @ self.masks
        return torch.nn.functional.cross_entropy(scores / self.temperature, y)

    def step(self, x, y, taps: dict | None = None):
        self.phi.grad = None
        loss = self.loss(x, y, taps)
        loss.backward()
        return loss

    # -- the camera noise of a noisy SimulatedChip step, drawn with torch's generator ----------
    def set_noise(self, spec, seed: int = 0) -> None:
        """The cameras of a noisy ``SimulatedChip`` measured with ``spec`` (a ``MeasurementSpec``,
        model ``monitors``), their noise drawn by a ``torch.Generator`` on this net's device seeded ``seed``."""
        if spec.noiseless or not math.isfinite(spec.photoelectrons):
            raise ValueError("set_noise needs a noisy MeasurementSpec (finite photon budget)")
        level = spec.level
        self.photoelectrons = float(spec.photoelectrons)
        self.read_std = level * spec.read_noise_e
        self.field_std = quadrature_noise_std(
            spec.holography, self.photoelectrons, spec.reference_e_per_px, self.read_std
        )
        self.field_adc = level / 2 ** (spec.adc_bits - 1) if spec.adc_bits > 0 else 0.0
        self.detect_adc = level / (2**spec.adc_bits - 1) if spec.adc_bits > 0 else 0.0
        self.reference_rad = level * spec.reference_phase_rad
        self.gen = self.torch.Generator(device=self.device)
        self.gen.manual_seed(int(seed))

    def noisy_step(self, x, y):
        """:meth:`step`, then the camera noise one noisy ``SimulatedChip`` step draws and applies.

        What the chip measures per step (optics/diffractive/chip.py ``data_pass``/``error_pass``,
        optics/core/camera.py, optics/core/measurement.py), with torch's generator:

        - data pass: the L layer inputs and the detector field, each (B, n, n) complex, as
          (B, n, n, 2) float32: Gaussian noise of the quadratures' std, the per-sample peak of
          ``|re|, |im|``, the ADC (``x / step``, rint, ``* step``) and the pass's per-sample reference
          rotation; the detector intensity (B, n, n): Poisson shot noise (``torch.poisson`` of
          ``I * QE N``), Gaussian read noise, clip at 0, per-sample peak, ADC, ``/ QE N``;
        - error pass: the L layer taps with the same field noise scaled per sample by the error's
          norm at the detector, and their own reference rotation.

        The noise is applied in place to the real activations (the forward fields and intensity,
        the gradients autograd passes through each layer; each tap's normals drawn into one reused
        buffer), after ``backward``, so the gradient returned is the clean autograd gradient: this
        row times what the noise costs on top of the torch step, which is what matters here, not a
        noisy training step's values. Call :meth:`set_noise` first.
        """
        if self.gen is None:
            raise RuntimeError("call set_noise(spec, seed) before noisy_step")
        torch = self.torch
        taps = {"data": [], "error": []}
        loss = self.step(x, y, taps)
        with torch.no_grad():
            data, error = taps["data"], taps["error"]
            self._fields_(data, None)
            self._detect(taps["intensity"])
            detector_error = error[0]  # hooks fire in backward order: the detector's first
            power = (detector_error.real**2 + detector_error.imag**2).sum(dim=(1, 2))
            scale = power.sqrt_().clamp_min_(1e-30)
            self._fields_(error[1:], scale)
        return loss

    def _rotation(self, rows: int):
        """The pass's residual reference phase ``exp(i theta)`` (B, 1, 1), or None."""
        if self.reference_rad == 0:
            return None
        torch = self.torch
        theta = torch.randn(rows, generator=self.gen, device=self.device) * self.reference_rad
        return torch.polar(torch.ones_like(theta), theta).reshape(-1, 1, 1)

    def _fields_(self, fields: list, scale) -> None:
        """Holographic measurement of each (B, n, n) complex field, in place (one rotation per pass)."""
        torch = self.torch
        rows = fields[0].shape[0]
        re, im = self.field_std
        std = [re] if re == im else [re, im]  # one gain per sample where the quadratures agree (vectorises)
        gain = torch.tensor(std, dtype=torch.float32, device=self.device).reshape(1, 1, 1, -1)
        gain = gain.expand(rows, 1, 1, len(std)) if scale is None else gain * scale.reshape(-1, 1, 1, 1)
        rot = self._rotation(rows)
        for field in fields:
            pairs = torch.view_as_real(field)
            key = (tuple(pairs.shape), pairs.dtype)
            if key not in self._noise:
                self._noise[key] = torch.empty(key[0], dtype=key[1], device=self.device)
            noise = self._noise[key].normal_(generator=self.gen)
            pairs.addcmul_(noise, gain)
            if self.field_adc > 0:
                step = pairs.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min_(1e-30).mul_(self.field_adc)
                pairs.div_(step).round_().mul_(step)
            if rot is not None:
                field.mul_(rot)

    def _detect(self, intensity):
        """The detected intensity (B, n, n): shot and read noise, clip, ADC, in normalised units."""
        torch = self.torch
        e = torch.poisson(intensity * self.photoelectrons, generator=self.gen)
        if self.read_std > 0:
            e.add_(torch.randn(e.shape, generator=self.gen, device=self.device, dtype=e.dtype), alpha=self.read_std)
        e.clamp_min_(0)
        if self.detect_adc > 0:
            step = e.amax(dim=(1, 2), keepdim=True).clamp_min_(1e-30).mul_(self.detect_adc)
            e.div_(step).round_().mul_(step)
        return e.div_(self.photoelectrons)
