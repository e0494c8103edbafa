"""Saving live Python model objects in their framework's safe native format.

``modelport.register(obj, ...)`` accepts the objects people hold after training and
writes each one in a format that loads without running code:

=============================================  ==============================
object                                          saved as
=============================================  ==============================
scikit-learn estimator or pipeline             skops (``model.skops``)
``torch.nn.Module`` (needs a sample input)     ``torch.export`` (``model.pt2``),
                                               TorchScript trace as a fallback
``lightgbm.Booster`` / ``LGBMModel``            Booster text (``model.txt``)
``xgboost.Booster`` / ``XGBModel``              JSON (``model.json``)
=============================================  ==============================

Frameworks are recognised by the class's ancestry (module and class names), so
nothing is imported that the object did not already bring.

Example:
    >>> saved = save_object(pipeline, Path(tmp), sample_input=X[:5])   # doctest: +SKIP
    >>> saved.format, saved.path.name                                   # doctest: +SKIP
    ('sklearn', 'model.skops')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.core.errors import InvalidArgument
from modelport.runtimes.sample import as_sample

SUPPORTED = (
    "scikit-learn estimators and pipelines, torch.nn.Module, lightgbm.Booster/LGBMModel, "
    "xgboost.Booster/XGBModel"
)


@dataclass(frozen=True, slots=True)
class SavedObject:
    """Where a live object was written, its format, and the sample named for it."""

    path: Path
    format: str
    sample: dict[str, np.ndarray] | None
    type_name: str
    extra: dict[str, Any] = field(default_factory=dict)


def _ancestry(obj: Any) -> set[str]:
    return {f"{c.__module__}.{c.__qualname__}" for c in type(obj).__mro__}


def framework_of(obj: Any) -> str | None:
    """``pytorch``, ``lightgbm``, ``xgboost``, ``sklearn`` or None, from the class ancestry."""
    names = _ancestry(obj)
    if "torch.nn.modules.module.Module" in names:
        return "pytorch"
    if names & {"lightgbm.basic.Booster", "lightgbm.sklearn.LGBMModel"}:
        return "lightgbm"
    if names & {"xgboost.core.Booster", "xgboost.sklearn.XGBModel"}:
        return "xgboost"
    if "sklearn.base.BaseEstimator" in names:
        return "sklearn"
    return None


def save_object(obj: Any, directory: Path, sample_input: Any = None) -> SavedObject:
    """Write ``obj`` under ``directory`` in its safe native format."""
    kind = framework_of(obj)
    type_name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if kind is None:
        raise InvalidArgument(f"cannot register a {type_name} object; supported: {SUPPORTED}")
    if kind == "pytorch":
        return _save_torch(obj, directory, sample_input, type_name)
    sample = as_sample(sample_input, "X") if sample_input is not None else None
    extra: dict[str, Any] = {}
    classes = getattr(obj, "classes_", None)
    if classes is not None and kind != "sklearn":
        extra["class_labels"] = [c.item() if hasattr(c, "item") else str(c) for c in classes]
    if kind == "sklearn":
        from modelport.runtimes.sklearn import save_skops

        return SavedObject(save_skops(obj, directory / "model.skops"), "sklearn", sample, type_name)
    if kind == "lightgbm":
        booster = getattr(obj, "booster_", obj)
        path = directory / "model.txt"
        booster.save_model(str(path))
        return SavedObject(path, "lightgbm", sample, type_name, extra)
    booster = obj.get_booster() if hasattr(obj, "get_booster") else obj
    path = directory / "model.json"
    booster.save_model(str(path))
    return SavedObject(path, "xgboost", sample, type_name, extra)


def _save_torch(module: Any, directory: Path, sample_input: Any, type_name: str) -> SavedObject:
    from modelport.runtimes.torch_tools import (
        export_program,
        forward_params,
        save_program,
        trace_module,
    )

    if sample_input is None:
        raise InvalidArgument(
            "registering a torch.nn.Module needs sample_input= (an array, or a dict of "
            "named arrays for several inputs): PyTorch records no input shapes"
        )
    params = forward_params(module)
    sample = as_sample(sample_input, params[0] if params else "input")
    keywords = set(sample) <= set(params) and len(sample) > 1
    if len(sample) == 1 and params and next(iter(sample)) not in params:
        keywords = False
    try:
        program = export_program(module, sample, keywords=keywords)
    except Exception as export_error:
        try:
            traced = trace_module(module, sample)
        except Exception as trace_error:
            raise InvalidArgument(
                f"cannot save {type_name}: torch.export failed ({export_error}) and so did "
                f"tracing ({trace_error})"
            ) from trace_error
        path = directory / "model.pt"
        traced.save(str(path))
        note = {"export_error": str(export_error)[:500]}
        return SavedObject(path, "torchscript", sample, type_name, note)
    path = directory / "model.pt2"
    save_program(program, path)
    return SavedObject(path, "torch-export", sample, type_name)
