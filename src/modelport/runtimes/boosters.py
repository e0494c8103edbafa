"""Gradient-boosted trees: LightGBM (Booster text) and XGBoost (``.json`` / ``.ubj``).

Both libraries save boosters in data formats that run no code on load. Two cautions:

- LightGBM *aborts the process* (``std::terminate``) on some malformed model text
  rather than raising. Every LightGBM file is therefore checked here first, tree by
  tree (fields present, array lengths, child indices, ``end of trees``), so a
  truncated or corrupt file fails with :class:`InvalidModel` instead.
- LightGBM's JSON dump (``dump_model``) cannot be loaded back by LightGBM; such a file
  is recognised and refused with the way to save a loadable one.

Signatures come from the model (feature count, objective, classes) or from a sample
input. Classifiers answer ``label`` (class index) and ``probabilities`` (one column per
class, binary models included); other objectives answer ``variable`` (n × targets) —
the names and shapes onnxmltools gives, so converted versions answer alike.

Example:
    >>> insp = LightGBMFormat().inspect(Path("model.txt"))   # doctest: +SKIP
    >>> [t.name for t in insp.signature.outputs]             # doctest: +SKIP
    ['label', 'probabilities']
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from modelport.core.errors import (
    InvalidArgument,
    InvalidModel,
    MissingDependency,
    ModelExecutionError,
)
from modelport.core.types import ModelSignature
from modelport.runtimes._pickles import read_head
from modelport.runtimes.base import Inspection, LoadSpec, RuntimeOptions
from modelport.runtimes.sample import cast_inputs, signature_from_arrays, with_batch

_XGB_JSON = re.compile(rb'\A\s*\{\s*"learner"\s*:')
_LGB_TEXT = b"tree\nversion="
_TREE_ARRAYS = ("split_feature", "threshold", "decision_type", "left_child", "right_child")


def _lightgbm() -> Any:
    try:
        import lightgbm
    except ImportError as e:
        raise MissingDependency.for_extra("lightgbm", "lightgbm", "LightGBM models") from e
    return lightgbm


def _xgboost() -> Any:
    try:
        import xgboost
    except ImportError as e:
        raise MissingDependency.for_extra("xgboost", "xgboost", "XGBoost models") from e
    return xgboost


def _classifier_outputs(p: np.ndarray) -> dict[str, np.ndarray]:
    """label + probabilities from P(class 1) (binary, 1-D) or class probabilities (2-D)."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    return {"label": np.argmax(p, axis=1).astype(np.int64), "probabilities": p}


def _regression_outputs(y: np.ndarray) -> dict[str, np.ndarray]:
    y = np.asarray(y, dtype=np.float64)
    return {"variable": y.reshape(len(y), -1)}


def _signature(
    predict: Any, n_features: int, sample: dict[str, np.ndarray] | None
) -> ModelSignature:
    if sample is None:
        sample = {"X": np.zeros((2, n_features), np.float32)}
    if len(sample) != 1:
        raise InvalidArgument(f"boosters take one 2-D input; the sample has {sorted(sample)}")
    name, X = next(iter(sample.items()))
    if X.ndim != 2 or X.shape[1] != n_features:
        raise InvalidArgument(
            f"sample input {name!r} has shape {list(X.shape)}; the model takes [-1, {n_features}]"
        )
    try:
        outputs = predict(with_batch(sample, max(2, len(X)))[name])
    except Exception as e:
        raise InvalidArgument(f"the model fails on the sample input: {e}") from e
    return signature_from_arrays({name: X}, outputs)


# ----------------------------------------------------------------------------- LightGBM


def check_lightgbm_text(text: str, name: str = "model") -> dict[str, str]:
    """Validate LightGBM model text structurally; return its header fields.

    Example:
        >>> check_lightgbm_text("tree\\nversion=v4\\n")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        modelport.core.errors.InvalidModel: model: LightGBM model text has no tree_sizes ...
    """

    def bad(why: str) -> InvalidModel:
        return InvalidModel(f"{name}: LightGBM model text {why} (truncated or corrupt?)")

    head, sep, body = text.partition("\n\n")
    header = dict(line.split("=", 1) for line in head.splitlines()[1:] if "=" in line)
    if "tree_sizes" not in header or not sep:
        raise bad("has no tree_sizes header")
    try:
        sizes = [int(s) for s in header["tree_sizes"].split()]
        max_feature = int(header.get("max_feature_idx", "-1"))
        int(header.get("num_class", "1"))
    except ValueError as e:
        raise bad(f"has a malformed header: {e}") from e
    if "\nend of trees" not in "\n" + body:
        raise bad("does not reach 'end of trees'")
    blocks = body.split("\nend of trees", 1)[0].strip("\n").split("\n\n\n")
    blocks = [b for b in blocks if b.strip()]
    if len(blocks) != len(sizes):
        raise bad(f"declares {len(sizes)} trees but holds {len(blocks)}")
    for i, block in enumerate(blocks):
        fields = dict(line.split("=", 1) for line in block.strip().splitlines() if "=" in line)
        if fields.get("Tree") != str(i):
            raise bad(f"has tree block {i} out of order")
        try:
            leaves = int(fields["num_leaves"])
            values = [float(v) for v in fields["leaf_value"].split()]
            if len(values) != leaves or leaves < 1:
                raise bad(f"tree {i}: {len(values)} leaf values for {leaves} leaves")
            if leaves == 1:
                continue
            arrays = {k: fields[k].split() for k in _TREE_ARRAYS}
            for k, arr in arrays.items():
                if len(arr) != leaves - 1:
                    raise bad(f"tree {i}: {k} has {len(arr)} entries, expected {leaves - 1}")
            for v in arrays["threshold"]:
                float(v)
            for f in arrays["split_feature"]:
                if not 0 <= int(f) <= max_feature:
                    raise bad(f"tree {i}: split on feature {f} beyond {max_feature}")
            for k in ("left_child", "right_child"):
                for c in arrays[k]:
                    if not -leaves <= int(c) <= leaves - 2:
                        raise bad(f"tree {i}: child index {c} out of range")
            if int(fields.get("num_cat", "0")) > 0:
                for k in ("cat_boundaries", "cat_threshold"):
                    [int(v) for v in fields[k].split()]
        except KeyError as e:
            raise bad(f"tree {i} lacks the field {e.args[0]}") from e
        except ValueError as e:
            raise bad(f"tree {i} has a malformed number: {e}") from e
    return header


def _lgb_task(header: dict[str, str]) -> tuple[str, int]:
    objective = header.get("objective", "regression").split()[0]
    num_class = int(header.get("num_class", "1"))
    if objective == "binary":
        return "binary", 2
    if objective in ("multiclass", "multiclassova", "softmax", "multiclass_ova"):
        return "multiclass", num_class
    return "regression", 1


class LightGBMFormat:
    """LightGBM Booster model text (``booster.save_model('model.txt')``)."""

    name = "lightgbm"
    framework = "lightgbm"
    default_input = "X"

    def sniff(self, path: Path) -> bool:
        if not path.is_file():
            return False
        head = read_head(path, 4096)
        if head.startswith(_LGB_TEXT):
            return True
        # LightGBM's JSON dump: recognised so the refusal can say what to do
        return (
            head.lstrip().startswith(b"{")
            and b'"tree_info"' in read_head(path, 1 << 16)
            and (b'"version":"v' in head.replace(b" ", b""))
        )

    def _read(self, path: Path) -> tuple[str, dict[str, str]]:
        head = read_head(path, 64)
        if not head.startswith(_LGB_TEXT):
            if head.lstrip().startswith(b"{"):
                raise InvalidModel(
                    f"{path.name} is a LightGBM JSON dump, which LightGBM cannot load back; "
                    "save the model with booster.save_model('model.txt')"
                )
            raise InvalidModel(f"{path.name} is not LightGBM model text")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidModel(f"{path.name}: cannot read LightGBM model text: {e}") from e
        return text, check_lightgbm_text(text, path.name)

    def _booster(self, text: str, name: str) -> Any:
        lgb = _lightgbm()
        try:
            return lgb.Booster(model_str=text)
        except Exception as e:
            raise InvalidModel(f"{name}: LightGBM cannot load it: {e}") from e

    def inspect(
        self,
        path: Path,
        *,
        sample_input: dict[str, np.ndarray] | None = None,
        trust: bool = False,
    ) -> Inspection:
        """Validate the text, load it, and read the signature (sample optional)."""
        text, header = self._read(path)
        booster = self._booster(text, path.name)
        task, classes = _lgb_task(header)
        runtime = BoosterRuntime.lightgbm(booster, task, ModelSignature())
        signature = _signature(runtime.raw_predict, int(booster.num_feature()), sample_input)
        extra = {"task": task, "num_classes": classes, "num_trees": int(booster.num_trees())}
        return Inspection(
            self.name, self.framework, signature, {"model.txt": path}, "model.txt", extra
        )

    def load(self, spec: LoadSpec, options: RuntimeOptions) -> BoosterRuntime:
        task = str(spec.extra.get("task", "regression"))
        return BoosterRuntime.lightgbm(
            self.load_native(spec), task, spec.signature, threads=options.intra_op_threads
        )

    def load_native(self, spec: LoadSpec) -> Any:
        """The ``lightgbm.Booster``."""
        path = spec.directory / spec.entry
        text, _ = self._read(path)
        return self._booster(text, path.name)


# ----------------------------------------------------------------------------- XGBoost


def _is_ubj(head: bytes) -> bool:
    return (
        head[:1] == b"{"
        and head[1:2] in (b"i", b"U", b"I", b"l", b"L")
        and (b"learner" in head[:24])
    )


def _xgb_task(booster: Any) -> tuple[str, int, str]:
    config = json.loads(booster.save_config())
    learner = config.get("learner", {})
    objective = str(learner.get("objective", {}).get("name", ""))
    num_class = int(learner.get("learner_model_param", {}).get("num_class", "0") or 0)
    if objective in ("binary:logistic",):
        return "binary", 2, objective
    if objective in ("multi:softprob", "multi:softmax"):
        return "multiclass", max(num_class, 2), objective
    return "regression", 1, objective


class XGBoostFormat:
    """XGBoost boosters saved as JSON (``.json``) or UBJSON (``.ubj``)."""

    name = "xgboost"
    framework = "xgboost"
    default_input = "X"

    def sniff(self, path: Path) -> bool:
        if not path.is_file():
            return False
        head = read_head(path, 256)
        return bool(_XGB_JSON.match(head)) or _is_ubj(head)

    def _booster(self, path: Path) -> tuple[Any, str]:
        head = read_head(path, 256)
        kind = "json" if _XGB_JSON.match(head) else "ubj" if _is_ubj(head) else None
        if kind is None:
            raise InvalidModel(f"{path.name} is not an XGBoost JSON/UBJSON model")
        xgb = _xgboost()
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(path.read_bytes()))
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InvalidModel(f"{path.name}: XGBoost cannot load it: {first}") from e
        return booster, kind

    def inspect(
        self,
        path: Path,
        *,
        sample_input: dict[str, np.ndarray] | None = None,
        trust: bool = False,
    ) -> Inspection:
        """Load the booster and read the signature (sample optional)."""
        booster, kind = self._booster(path)
        task, classes, objective = _xgb_task(booster)
        runtime = BoosterRuntime.xgboost(booster, task, objective, ModelSignature())
        signature = _signature(runtime.raw_predict, int(booster.num_features()), sample_input)
        entry = f"model.{kind}"
        extra = {"task": task, "num_classes": classes, "objective": objective}
        return Inspection(self.name, self.framework, signature, {entry: path}, entry, extra)

    def load(self, spec: LoadSpec, options: RuntimeOptions) -> BoosterRuntime:
        task = str(spec.extra.get("task", "regression"))
        objective = str(spec.extra.get("objective", ""))
        booster = self.load_native(spec)
        if options.intra_op_threads > 0:
            booster.set_param({"nthread": options.intra_op_threads})
        return BoosterRuntime.xgboost(booster, task, objective, spec.signature)

    def load_native(self, spec: LoadSpec) -> Any:
        """The ``xgboost.Booster``."""
        return self._booster(spec.directory / spec.entry)[0]


# ----------------------------------------------------------------------------- runtime


class BoosterRuntime:
    """A LightGBM or XGBoost booster behind the Runtime contract.

    XGBoost's ``inplace_predict`` is thread-safe; LightGBM predictions are serialised
    with a lock (its Booster is not documented as safe for concurrent predict).
    ``RuntimeOptions.intra_op_threads`` > 0 caps the library's OpenMP threads.
    """

    def __init__(self, booster: Any, signature: ModelSignature, predict: Any, lock: bool) -> None:
        self.booster = booster
        self._signature = signature
        self._predict = predict
        self._lock = threading.Lock() if lock else None

    @classmethod
    def lightgbm(
        cls, booster: Any, task: str, signature: ModelSignature, threads: int = 0
    ) -> BoosterRuntime:
        extra = {"num_threads": threads} if threads > 0 else {}

        def predict(X: np.ndarray) -> dict[str, np.ndarray]:
            p = booster.predict(X, **extra)
            return _regression_outputs(p) if task == "regression" else _classifier_outputs(p)

        return cls(booster, signature, predict, lock=True)

    @classmethod
    def xgboost(
        cls, booster: Any, task: str, objective: str, signature: ModelSignature
    ) -> BoosterRuntime:
        def predict(X: np.ndarray) -> dict[str, np.ndarray]:
            if objective == "multi:softmax":
                margin = np.asarray(booster.inplace_predict(X, predict_type="margin"))
                e = np.exp(margin - margin.max(axis=1, keepdims=True))
                return _classifier_outputs(e / e.sum(axis=1, keepdims=True))
            p = booster.inplace_predict(X)
            return _regression_outputs(p) if task == "regression" else _classifier_outputs(p)

        return cls(booster, signature, predict, lock=False)

    def raw_predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        if self._lock is None:
            out: dict[str, np.ndarray] = self._predict(X)
            return out
        with self._lock:
            out = self._predict(X)
            return out

    @property
    def signature(self) -> ModelSignature:
        return self._signature

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self._signature.inputs[0]
        if spec.name not in inputs:
            raise InvalidArgument(f"missing input {spec.name!r}")
        X = cast_inputs({spec.name: inputs[spec.name]}, self._signature)[spec.name]
        try:
            return self.raw_predict(X)
        except Exception as e:
            raise ModelExecutionError(f"booster prediction failed: {e}") from e

    def close(self) -> None:
        self.booster = None
