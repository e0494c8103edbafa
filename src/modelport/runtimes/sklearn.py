"""scikit-learn: estimators and pipelines, safe (skops) by default, pickle only with trust.

**skops** files (``skops.io.dump``) are a zip of a JSON object tree plus ``.npy``
arrays. Loading constructs only *trusted* types: skops's defaults (scikit-learn
estimators, numpy, scipy basics) plus :data:`TRUSTED_TYPES`, the server-side policy
below. The policy lives in code, never in the artifact: a file cannot widen its own
trust. A file holding any other type is refused with the list of offending types,
unless the user registers it with explicit trust, which is recorded in the version.

**joblib/pickle** files run code when loaded. They are recognised by reading their
opcodes (never by unpickling), and refused unless registered with ``trust=True``.

The runtime answers with named tensors: classifiers give ``label`` and (when the
estimator has ``predict_proba``) ``probabilities``; regressors give ``variable``
(a column per target); transformers give ``variable`` from ``transform``. These are
the names skl2onnx gives, so a converted version answers with the same names.

Example:
    >>> fmt = SkopsFormat()
    >>> insp = fmt.inspect(Path("pipe.skops"), sample_input={"X": X[:5]})   # doctest: +SKIP
    >>> [t.name for t in insp.signature.outputs]                            # doctest: +SKIP
    ['label', 'probabilities']
"""

from __future__ import annotations

import threading
import zipfile
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
from modelport.runtimes._pickles import (
    PICKLE_MAGIC,
    joblib_stream,
    read_head,
    scan_pickle,
    zip_names,
)
from modelport.runtimes.base import Inspection, LoadSpec, RuntimeOptions
from modelport.runtimes.sample import (
    cast_inputs,
    name_outputs,
    signature_from_arrays,
    with_batch,
)

#: scikit-learn internals that skops can rebuild without running foreign code, trusted
#: on top of skops's defaults. Server-side policy: never read from an artifact.
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "collections.OrderedDict",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.utils._bunch.Bunch",
    }
)
_PICKLE_HINT = (
    "loading a pickle can run arbitrary code; register it with --trust (Python: "
    "trust=True) only if you trust where it came from, or save the model with skops "
    "(skops.io.dump) or register the live object with modelport.register(obj, ...)"
)


def _skops() -> Any:
    try:
        import skops.io as sio
    except ImportError as e:
        raise MissingDependency.for_extra("skops", "sklearn", "scikit-learn models") from e
    return sio


def _sklearn_base() -> Any:
    try:
        import sklearn.base
    except ImportError as e:
        raise MissingDependency.for_extra("scikit-learn", "sklearn", "scikit-learn models") from e
    return sklearn.base


def untrusted_types(path: Path) -> list[str]:
    """Types in a skops file that neither skops's defaults nor :data:`TRUSTED_TYPES` allow."""
    sio = _skops()
    try:
        found = sio.get_untrusted_types(file=str(path))
    except Exception as e:
        raise InvalidModel(f"{path.name} is not a readable skops file: {e}") from e
    return sorted(t for t in found if t not in TRUSTED_TYPES)


def load_skops(path: Path, trust: bool) -> Any:
    """Load a skops file under the policy; extra types only with ``trust``."""
    sio = _skops()
    found = sio.get_untrusted_types(file=str(path))
    refused = sorted(t for t in found if t not in TRUSTED_TYPES)
    if refused and not trust:
        raise InvalidModel(
            f"{path.name} holds types outside the trusted policy: {', '.join(refused)}; "
            "register with --trust if you trust them (loading them may run their code)"
        )
    try:
        return sio.load(str(path), trusted=list(found))
    except Exception as e:
        raise InvalidModel(f"{path.name}: skops cannot load it: {e}") from e


def load_pickle(path: Path) -> Any:
    """Unpickle a joblib/pickle file. Runs the file's code: call only with trust."""
    try:
        import joblib
    except ImportError as e:
        raise MissingDependency.for_extra("joblib", "sklearn", "pickled scikit-learn models") from e
    try:
        return joblib.load(path)
    except Exception as e:
        raise InvalidModel(f"{path.name}: cannot unpickle it: {e}") from e


def predict_named(model: Any, X: np.ndarray) -> dict[str, np.ndarray]:
    """Run an estimator and name what it gives (label/probabilities or variable)."""
    base = _sklearn_base()
    out: dict[str, np.ndarray] = {}
    if base.is_classifier(model) or (
        hasattr(model, "predict_proba") and hasattr(model, "classes_")
    ):
        label = np.asarray(model.predict(X))
        if label.dtype.kind in "OUS":
            label = np.array(
                [v if isinstance(v, bytes) else str(v).encode() for v in label.ravel()],
                dtype=object,
            ).reshape(label.shape)
        elif label.dtype.kind in "iub":
            label = label.astype(np.int64)
        out["label"] = label
        if hasattr(model, "predict_proba"):
            out["probabilities"] = np.asarray(model.predict_proba(X))
    elif hasattr(model, "predict"):
        y = np.asarray(model.predict(X))
        out["variable"] = y.reshape(-1, 1) if y.ndim == 1 else y
    elif hasattr(model, "transform"):
        out["variable"] = np.asarray(model.transform(X))
    else:
        raise InvalidModel(f"{type(model).__name__} has neither predict nor transform")
    return out


def sklearn_signature(
    model: Any, sample: dict[str, np.ndarray] | None, input_name: str = "X"
) -> tuple[ModelSignature, dict[str, np.ndarray]]:
    """Run the model on the sample (or on zeros shaped from ``n_features_in_``)."""
    if sample is None:
        n = getattr(model, "n_features_in_", None)
        if not isinstance(n, int | np.integer):
            raise InvalidArgument(
                f"{type(model).__name__} does not record its number of features; give a "
                "sample input (--sample-input FILE.npy)"
            )
        sample = {input_name: np.zeros((2, int(n)), np.float32)}
    if len(sample) != 1:
        raise InvalidArgument(
            f"scikit-learn models take one 2-D input; the sample has {sorted(sample)}"
        )
    name, X = next(iter(sample.items()))
    if X.ndim != 2:
        raise InvalidArgument(f"scikit-learn input {name!r} must be 2-D, got shape {X.shape}")
    probe = with_batch(sample, max(2, len(X)))
    try:
        outputs = predict_named(model, probe[name])
    except InvalidModel:
        raise
    except Exception as e:
        raise InvalidArgument(f"the model fails on the sample input: {e}") from e
    return signature_from_arrays({name: X}, outputs), outputs


def describe_estimator(model: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {"estimator": f"{type(model).__module__}.{type(model).__qualname__}"}
    classes = getattr(model, "classes_", None)
    if classes is not None:
        extra["classes"] = [c.item() if hasattr(c, "item") else str(c) for c in classes]
    steps = getattr(model, "steps", None)
    if steps:
        extra["steps"] = [f"{n}:{type(s).__name__}" for n, s in steps]
    return extra


# ----------------------------------------------------------------------------- formats


def _is_skops(path: Path) -> bool:
    names = zip_names(path) if path.is_file() else None
    if not names or "schema.json" not in names:
        return False
    try:
        with zipfile.ZipFile(path) as z, z.open("schema.json") as f:
            head = f.read(4096)
    except (OSError, zipfile.BadZipFile, KeyError):
        return False
    return b'"__loader__"' in head and b'"__module__"' in head


class SkopsFormat:
    """scikit-learn estimators saved with skops (``.skops``), recognised by their schema."""

    name = "sklearn"
    framework = "sklearn"
    default_input = "X"

    def sniff(self, path: Path) -> bool:
        return _is_skops(path)

    def inspect(
        self,
        path: Path,
        *,
        sample_input: dict[str, np.ndarray] | None = None,
        trust: bool = False,
    ) -> Inspection:
        """Check the types against the policy, load, and run the sample for the signature."""
        if not _is_skops(path):
            raise InvalidModel(f"{path.name} is not a skops file (a zip with schema.json)")
        refused = untrusted_types(path)
        model = load_skops(path, trust)
        signature, _ = sklearn_signature(model, sample_input, self.default_input)
        extra = describe_estimator(model)
        if refused:
            extra["untrusted_types"] = refused
            extra["requires_trust"] = True
        return Inspection(
            self.name, self.framework, signature, {"model.skops": path}, "model.skops", extra
        )

    def load(self, spec: LoadSpec, options: RuntimeOptions) -> SklearnRuntime:
        return SklearnRuntime(self.load_native(spec), spec.signature)

    def load_native(self, spec: LoadSpec) -> Any:
        """The estimator object (for converters)."""
        return load_skops(spec.directory / spec.entry, spec.trusted)


class SklearnPickleFormat:
    """joblib/pickle files holding scikit-learn-compatible estimators; need explicit trust."""

    name = "sklearn-pickle"
    framework = "sklearn"
    default_input = "X"

    def sniff(self, path: Path) -> bool:
        if not path.is_file() or not read_head(path, 2).startswith(PICKLE_MAGIC):
            return False
        stream = joblib_stream(read_head(path))
        if stream is None:
            return False
        scan = scan_pickle(stream)
        return scan.mentions("sklearn", "lightgbm.sklearn", "xgboost.sklearn", "joblib")

    def inspect(
        self,
        path: Path,
        *,
        sample_input: dict[str, np.ndarray] | None = None,
        trust: bool = False,
    ) -> Inspection:
        """Refuse unless ``trust``; then unpickle, and run the sample for the signature."""
        if not path.is_file():
            raise InvalidModel(f"{path} is not a file")
        head = read_head(path)
        stream = joblib_stream(head)
        if stream is None:
            raise InvalidModel(f"{path.name} is not a pickle or joblib file")
        if not trust:
            shown = scan_pickle(stream).shown()
            raise InvalidModel(f"{path.name} is a pickle (it imports {shown}): {_PICKLE_HINT}")
        model = load_pickle(path)
        signature, _ = sklearn_signature(model, sample_input, self.default_input)
        extra = describe_estimator(model)
        extra.update(requires_trust=True, serialization="pickle")
        return Inspection(
            self.name, self.framework, signature, {"model.joblib": path}, "model.joblib", extra
        )

    def load(self, spec: LoadSpec, options: RuntimeOptions) -> SklearnRuntime:
        return SklearnRuntime(self.load_native(spec), spec.signature)

    def load_native(self, spec: LoadSpec) -> Any:
        if not spec.trusted:
            raise InvalidModel(f"{spec.entry} is a pickle and the version is not trusted")
        return load_pickle(spec.directory / spec.entry)


class SklearnRuntime:
    """A fitted estimator behind the Runtime contract.

    Thread-safe: fitted scikit-learn estimators only read their state in predict; the
    lock guards the few that do not (it is held only around the call).
    """

    def __init__(self, model: Any, signature: ModelSignature) -> None:
        self.model = model
        self._signature = signature
        self._lock = threading.Lock()
        self._serial = type(model).__name__ in {"KNeighborsClassifier", "KNeighborsRegressor"}

    @property
    def signature(self) -> ModelSignature:
        return self._signature

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self._signature.inputs[0]
        if spec.name not in inputs:
            raise InvalidArgument(f"missing input {spec.name!r}")
        X = cast_inputs({spec.name: inputs[spec.name]}, self._signature)[spec.name]
        try:
            if self._serial:
                with self._lock:
                    out = predict_named(self.model, X)
            else:
                out = predict_named(self.model, X)
        except Exception as e:
            raise ModelExecutionError(f"{type(self.model).__name__} failed: {e}") from e
        return name_outputs(out)

    def close(self) -> None:
        self.model = None


def save_skops(model: Any, path: Path) -> Path:
    """Save a live estimator with skops (used by ``modelport.register(obj)``)."""
    sio = _skops()
    try:
        sio.dump(model, str(path))
    except Exception as e:
        raise InvalidArgument(f"skops cannot save {type(model).__name__}: {e}") from e
    return path
