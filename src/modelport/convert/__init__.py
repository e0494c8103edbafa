"""Framework → ONNX (and → TorchScript) conversion with a parity check.

Example:
    >>> from modelport.convert import convert
    >>> result = convert(registry, "cancer:1", to="onnx")   # doctest: +SKIP
    >>> print(result.parity.summary())                       # doctest: +SKIP
"""

from modelport.convert.converter import ROUTES, TARGETS, ConversionResult, ParityFailed, convert
from modelport.convert.parity import (
    DEFAULT_TOLERANCES,
    OutputParity,
    ParityReport,
    Tolerance,
    check_parity,
    parity_batches,
    synthesise,
)

__all__ = [
    "DEFAULT_TOLERANCES",
    "ROUTES",
    "TARGETS",
    "ConversionResult",
    "OutputParity",
    "ParityFailed",
    "ParityReport",
    "Tolerance",
    "check_parity",
    "convert",
    "parity_batches",
    "synthesise",
]
