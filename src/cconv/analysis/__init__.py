"""Curvature, size and symmetry analysis of cconv networks (notes sections 1, 2.4, 2.5).

Hessian (float64, on a copy of the net; BatchNorm and Dropout in evaluation
mode unless mode="train"):
    hvp, hessian, gradient, HessianOperator      exact Hessian-vector products
    top_eigenvalues, lanczos, hutchinson_trace, spectral_density
    classify, definiteness, curvature, taylor_check
Size report (notes 2.5):      summary(net, input_shape)
Equivariance / invariance:    equivariance_curve, invariance_curve, shift_probe
Linear collapse (notes 2.4.2): fold_linear(net)
"""
from .hessian import (
    DEFAULT_MAX_BYTES,
    HessianOperator,
    HessianTooLargeError,
    TaylorCheck,
    as_operator,
    classify,
    curvature,
    definiteness,
    gradient,
    hessian,
    hessian_nbytes,
    hvp,
    taylor_check,
)
from .lanczos import (
    EigenResult,
    SpectralDensity,
    TraceEstimate,
    hutchinson_trace,
    lanczos,
    spectral_density,
    top_eigenvalues,
)
from .rop import register_rule
from .size import LayerSize, SizeReport, summary

__all__ = [
    "DEFAULT_MAX_BYTES",
    "EigenResult",
    "HessianOperator",
    "HessianTooLargeError",
    "LayerSize",
    "SizeReport",
    "SpectralDensity",
    "TaylorCheck",
    "TraceEstimate",
    "as_operator",
    "classify",
    "curvature",
    "definiteness",
    "equivariance_curve",
    "fold_linear",
    "gradient",
    "hessian",
    "hessian_nbytes",
    "hutchinson_trace",
    "hvp",
    "invariance_curve",
    "lanczos",
    "register_rule",
    "shift_probe",
    "spectral_density",
    "summary",
    "taylor_check",
    "top_eigenvalues",
]

_LAZY = {"equivariance_curve": "probes", "invariance_curve": "probes",
         "shift_probe": "probes", "fold_linear": "fold"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cconv.analysis' has no attribute {name!r}")
