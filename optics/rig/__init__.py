"""A physical diffractive rig driven through slmsuite.

Holography, the measure-and-reload chip, calibrations, an emulated rig.
"""
