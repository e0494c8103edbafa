"""The bottom layer: shared types, errors and settings. Imports nothing else of modelport."""

from modelport.core.config import Settings
from modelport.core.errors import ModelportError
from modelport.core.types import ModelRef, ModelSignature, TensorSpec

__all__ = ["ModelRef", "ModelSignature", "ModelportError", "Settings", "TensorSpec"]
