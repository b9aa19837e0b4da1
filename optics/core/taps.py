"""What one optical pass returns: the measured (or, for an oracle, exact) taps.

Every system (diffractive chip, MZI mesh, scattering medium) returns :class:`Taps`, so the
FFM step (:mod:`optics.core.ffm`) reads them the same way. Fields are complex, in
normalised units (each input sample carries unit power, so ``|u|^2`` is a fraction of the
sample's photons per pixel or mode).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(eq=False)
class Taps:
    """Fields measured in one pass.

    ``fields`` (L, B, *plane): after modulation layer l (data pass: ``u_l``) or the error
    field arriving at layer l (error pass: ``eps_l``). Data pass only: ``output`` (B, *plane)
    the complex field at the detector and ``intensity`` (B, *plane) the detected intensity
    ``|y|^2`` (fraction of the input photons). Error pass with ``to_input``: ``output`` is
    the error at the input plane.
    """

    fields: object
    output: object = None
    intensity: object = None
