"""Drift statistics: reference profiles and per-feature tests, as pure functions.

A :class:`DriftProfile` summarises reference data (usually the training or validation
set) per feature — quantile bins and a compressed empirical CDF for numeric features,
category frequencies for categorical ones — plus the distribution of the model's
predictions. :func:`compare` tests served data against it:

- **PSI** (population stability index) over the reference's decile bins, for every
  feature; the drift flag uses it (``psi >= psi_threshold``, 0.2 by default: below 0.1
  is usually read as stable, above 0.25 as a major shift);
- **Kolmogorov–Smirnov** two-sample test for numeric features (p-value reported; used
  for the flag only when ``ks_alpha`` is set, Bonferroni-corrected over features —
  with thousands of rows KS flags shifts too small to matter);
- **chi-square** goodness of fit for categorical features (p-value reported).

Features of a model input: a 2-D tensor ``X`` gives ``X[0]``, ``X[1]``, … (or the
names given in the version's ``extra["feature_names"]``); a 1-D tensor is one feature
named after it; a tensor of 3 or more dimensions (images) is summarised per row by its
mean and standard deviation (``X.mean``, ``X.std``). Booleans, strings and integer
features with few distinct values are categorical.

Example:
    >>> rng = np.random.default_rng(0)
    >>> ref = {"X": rng.normal(size=(2000, 2))}
    >>> profile = build_profile("m", "1", ref)
    >>> served = {"X": np.column_stack([rng.normal(size=500), rng.normal(3, 1, 500)])}
    >>> report = compare(profile, extract_features(served), None)
    >>> [(f.name, f.drifted) for f in report.features]
    [('X[0]', False), ('X[1]', True)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from modelport.core.errors import InvalidArgument, MissingDependency

PROFILE_SCHEMA = "modelport.drift-profile/v1"
PSI_EPS = 1e-4  # empty bins count as this share, so PSI stays finite
N_BINS = 10
CDF_POINTS = 1000  # reference values kept (as quantiles) for the KS test
MAX_CATEGORIES = 50  # more frequent ones are kept; the rest is OTHER
CATEGORICAL_INT_LEVELS = 20  # integer features with at most this many values
OTHER = "__other__"

Kind = Literal["numeric", "categorical"]


@dataclass(frozen=True, slots=True)
class FeatureProfile:
    """The reference distribution of one feature (or of the predictions)."""

    name: str
    kind: Kind
    count: int
    edges: tuple[float, ...] = ()  # numeric: interior bin edges
    fractions: tuple[float, ...] = ()  # numeric: per bin; categorical: per category
    quantiles: tuple[float, ...] = ()  # numeric: the reference CDF, for KS
    categories: tuple[str, ...] = ()
    mean: float | None = None
    std: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "count": self.count}
        if self.kind == "numeric":
            d.update(
                edges=list(self.edges),
                fractions=list(self.fractions),
                quantiles=list(self.quantiles),
                mean=self.mean,
                std=self.std,
            )
        else:
            d.update(categories=list(self.categories), fractions=list(self.fractions))
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureProfile:
        kind: Kind = "numeric" if d["kind"] == "numeric" else "categorical"
        return cls(
            name=str(d["name"]),
            kind=kind,
            count=int(d["count"]),
            edges=tuple(float(x) for x in d.get("edges", ())),
            fractions=tuple(float(x) for x in d.get("fractions", ())),
            quantiles=tuple(float(x) for x in d.get("quantiles", ())),
            categories=tuple(str(x) for x in d.get("categories", ())),
            mean=d.get("mean"),
            std=d.get("std"),
        )


@dataclass(frozen=True, slots=True)
class DriftProfile:
    """A version's reference profile: its features and (optionally) its predictions."""

    model: str
    version: str
    rows: int
    features: tuple[FeatureProfile, ...]
    prediction: FeatureProfile | None = None
    feature_names: dict[str, list[str]] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": PROFILE_SCHEMA,
            "model": self.model,
            "version": self.version,
            "rows": self.rows,
            "created_at": self.created_at,
            "feature_names": self.feature_names,
            "features": [f.to_dict() for f in self.features],
            "prediction": self.prediction.to_dict() if self.prediction else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DriftProfile:
        if d.get("schema") != PROFILE_SCHEMA:
            raise InvalidArgument(f"not a drift profile (schema {d.get('schema')!r})")
        pred = d.get("prediction")
        return cls(
            model=str(d["model"]),
            version=str(d["version"]),
            rows=int(d["rows"]),
            features=tuple(FeatureProfile.from_dict(f) for f in d["features"]),
            prediction=FeatureProfile.from_dict(pred) if pred else None,
            feature_names={k: list(v) for k, v in d.get("feature_names", {}).items()},
            created_at=str(d.get("created_at", "")),
        )


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """The test results of one feature."""

    name: str
    kind: Kind
    count: int
    psi: float | None
    ks_stat: float | None = None
    ks_pvalue: float | None = None
    chi2_pvalue: float | None = None
    drifted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "count": self.count,
            "psi": self.psi,
            "ks_stat": self.ks_stat,
            "ks_pvalue": self.ks_pvalue,
            "chi2_pvalue": self.chi2_pvalue,
            "drifted": self.drifted,
        }


@dataclass(frozen=True, slots=True)
class DriftThresholds:
    psi: float = 0.2
    ks_alpha: float | None = None
    min_rows: int = 100


@dataclass(frozen=True, slots=True)
class DriftReport:
    """:func:`compare`'s answer; :meth:`to_dict` is the ``/drift`` JSON."""

    model: str
    version: str
    window: int
    features: tuple[FeatureDrift, ...]
    prediction: FeatureDrift | None
    thresholds: DriftThresholds

    @property
    def enough_data(self) -> bool:
        return self.window >= self.thresholds.min_rows

    @property
    def drifted(self) -> bool:
        return any(f.drifted for f in self.features)

    @property
    def max_psi(self) -> float | None:
        values = [f.psi for f in self.features if f.psi is not None]
        return max(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "window": self.window,
            "drifted": self.drifted,
            "enough_data": self.enough_data,
            "max_psi": self.max_psi,
            "thresholds": {
                "psi": self.thresholds.psi,
                "ks_alpha": self.thresholds.ks_alpha,
                "min_rows": self.thresholds.min_rows,
            },
            "features": [f.to_dict() for f in self.features],
            "prediction": self.prediction.to_dict() if self.prediction else None,
        }


# ----------------------------------------------------------------------------- features


def extract_features(
    inputs: Mapping[str, np.ndarray], feature_names: Mapping[str, Sequence[str]] | None = None
) -> dict[str, np.ndarray]:
    """Split named input tensors into one 1-D column per feature (see module docs).

    Example:
        >>> cols = extract_features({"X": np.zeros((3, 2)), "tag": np.array([b"a"] * 3)})
        >>> {k: v.shape for k, v in cols.items()}
        {'X[0]': (3,), 'X[1]': (3,), 'tag': (3,)}
    """
    names = feature_names or {}
    out: dict[str, np.ndarray] = {}
    for tensor, raw in inputs.items():
        x = np.asarray(raw)
        if x.ndim == 0:
            x = x.reshape(1)
        if x.ndim == 1:
            out[tensor] = x
        elif x.ndim == 2:
            given = list(names.get(tensor, ()))
            if given and len(given) != x.shape[1]:
                raise InvalidArgument(
                    f"{len(given)} feature names for input {tensor!r} of {x.shape[1]} columns"
                )
            for i in range(x.shape[1]):
                out[given[i] if given else f"{tensor}[{i}]"] = x[:, i]
        else:
            flat = x.reshape(x.shape[0], -1)
            if flat.dtype.kind in "OSUb":
                continue  # no summary of a tensor of strings per row
            flat = flat.astype(np.float64, copy=False)
            out[f"{tensor}.mean"] = flat.mean(axis=1)
            out[f"{tensor}.std"] = flat.std(axis=1)
    return out


def as_categories(values: np.ndarray) -> np.ndarray:
    """Values as strings (bytes decoded as UTF-8), the form categories are compared in."""
    flat = np.asarray(values).ravel()
    if flat.dtype.kind == "O" or flat.dtype.kind == "S":
        return np.array(
            [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat],
            dtype=object,
        )
    if flat.dtype.kind == "f" and np.all(np.isfinite(flat)) and np.all(flat == np.round(flat)):
        flat = flat.astype(np.int64)
    return flat.astype(str).astype(object)


def is_categorical(values: np.ndarray) -> bool:
    """Strings and booleans always; integers with at most 20 distinct values."""
    kind = values.dtype.kind
    if kind in "OSUb":
        return True
    if kind in "iu":
        return len(np.unique(values)) <= CATEGORICAL_INT_LEVELS
    return False


def numeric(values: np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


# ----------------------------------------------------------------------------- profiles


def profile_feature(name: str, values: np.ndarray, kind: Kind | None = None) -> FeatureProfile:
    """Summarise reference values of one feature.

    Example:
        >>> p = profile_feature("x", np.arange(100.0))
        >>> p.kind, len(p.edges), round(sum(p.fractions), 6)
        ('numeric', 9, 1.0)
    """
    values = np.asarray(values).ravel()
    kind = kind or ("categorical" if is_categorical(values) else "numeric")
    if kind == "categorical":
        cats, counts = np.unique(as_categories(values), return_counts=True)
        order = np.argsort(-counts, kind="stable")[:MAX_CATEGORIES]
        kept = [str(cats[i]) for i in order]
        fractions = [float(counts[i]) / len(values) for i in order]
        rest = 1.0 - sum(fractions)
        if rest > 1e-12:
            kept.append(OTHER)
            fractions.append(rest)
        return FeatureProfile(
            name, "categorical", len(values), categories=tuple(kept), fractions=tuple(fractions)
        )
    x = numeric(values)
    if x.size == 0:
        raise InvalidArgument(f"feature {name!r} has no finite reference values")
    edges = np.unique(np.quantile(x, np.linspace(0, 1, N_BINS + 1)[1:-1]))
    points = min(CDF_POINTS, x.size)
    quantiles = np.quantile(x, np.linspace(0, 1, points)) if x.size > points else np.sort(x)
    return FeatureProfile(
        name,
        "numeric",
        int(x.size),
        edges=tuple(float(e) for e in edges),
        fractions=tuple(float(f) for f in bin_fractions(x, edges)),
        quantiles=tuple(float(q) for q in quantiles),
        mean=float(x.mean()),
        std=float(x.std()),
    )


def build_profile(
    model: str,
    version: str,
    inputs: Mapping[str, np.ndarray],
    predictions: np.ndarray | None = None,
    *,
    feature_names: Mapping[str, Sequence[str]] | None = None,
    categorical: Sequence[str] = (),
) -> DriftProfile:
    """The reference profile of ``inputs`` (and ``predictions``) for one version.

    ``categorical`` forces features (by name) to be treated as categories.
    """
    columns = extract_features(inputs, feature_names)
    if not columns:
        raise InvalidArgument("no features to profile: the inputs are empty")
    rows = len(next(iter(columns.values())))
    forced = set(categorical)
    features = tuple(
        profile_feature(n, v, "categorical" if n in forced else None) for n, v in columns.items()
    )
    pred = profile_feature("prediction", predictions) if predictions is not None else None
    return DriftProfile(
        model,
        version,
        rows,
        features,
        pred,
        feature_names={k: list(v) for k, v in (feature_names or {}).items()},
    )


# ----------------------------------------------------------------------------- statistics


def bin_fractions(values: np.ndarray, edges: np.ndarray | Sequence[float]) -> np.ndarray:
    """Share of ``values`` in each bin ``(-inf, e0], (e0, e1], …, (e_last, inf)``."""
    edges = np.asarray(edges, dtype=np.float64)
    idx = np.searchsorted(edges, values, side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    return counts / max(1, len(values))


def psi(expected: np.ndarray | Sequence[float], actual: np.ndarray | Sequence[float]) -> float:
    """Population stability index ``Σ (a − e)·ln(a / e)`` over matching bins.

    Example:
        >>> psi([0.5, 0.5], [0.5, 0.5])
        0.0
        >>> round(psi([0.5, 0.5], [0.9, 0.1]), 4)
        0.8789
    """
    e = np.clip(np.asarray(expected, dtype=np.float64), PSI_EPS, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), PSI_EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _stats() -> Any:
    try:
        from scipy import stats
    except ImportError as e:  # pragma: no cover - depends on the installed extras
        raise MissingDependency.for_extra("scipy", "monitor", "Drift tests") from e
    return stats


def compare_feature(
    profile: FeatureProfile, values: np.ndarray, thresholds: DriftThresholds, n_features: int = 1
) -> FeatureDrift:
    """Test served ``values`` of one feature against its reference profile."""
    values = np.asarray(values).ravel()
    if profile.kind == "categorical":
        cats = as_categories(values)
        index = {c: i for i, c in enumerate(profile.categories)}
        other = index.get(OTHER)
        counts = np.zeros(len(profile.categories) + (other is None), dtype=np.int64)
        unseen = len(counts) - 1 if other is None else other
        for c in cats:
            counts[index.get(c, unseen)] += 1
        n = int(counts.sum())
        expected = np.array([*profile.fractions, *([0.0] if other is None else [])])
        if n == 0:
            return FeatureDrift(profile.name, "categorical", 0, None)
        score = psi(expected, counts / n)
        exp = np.clip(expected, PSI_EPS, None)
        exp = exp / exp.sum() * n
        chi2_p = float(_stats().chisquare(counts, exp).pvalue) if len(counts) > 1 else 1.0
        return FeatureDrift(
            profile.name,
            "categorical",
            n,
            score,
            chi2_pvalue=_finite(chi2_p),
            drifted=n >= thresholds.min_rows and score >= thresholds.psi,
        )
    x = numeric(values)
    if x.size == 0:
        return FeatureDrift(profile.name, "numeric", 0, None)
    score = psi(profile.fractions, bin_fractions(x, profile.edges))
    ks = _stats().ks_2samp(np.asarray(profile.quantiles), x)
    ks_p = _finite(float(ks.pvalue))
    drifted = score >= thresholds.psi
    if thresholds.ks_alpha is not None and ks_p is not None:
        drifted = drifted or ks_p < thresholds.ks_alpha / max(1, n_features)
    return FeatureDrift(
        profile.name,
        "numeric",
        int(x.size),
        score,
        ks_stat=float(ks.statistic),
        ks_pvalue=ks_p,
        drifted=x.size >= thresholds.min_rows and drifted,
    )


def compare(
    profile: DriftProfile,
    columns: Mapping[str, np.ndarray],
    predictions: np.ndarray | None,
    thresholds: DriftThresholds | None = None,
) -> DriftReport:
    """Test served feature ``columns`` (from :func:`extract_features`) and predictions."""
    th = thresholds or DriftThresholds()
    rows = len(next(iter(columns.values()))) if columns else 0
    results = []
    for fp in profile.features:
        if fp.name in columns:
            results.append(compare_feature(fp, columns[fp.name], th, len(profile.features)))
    pred = None
    if profile.prediction is not None and predictions is not None:
        pred = compare_feature(profile.prediction, predictions, th)
    return DriftReport(profile.model, profile.version, rows, tuple(results), pred, th)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
