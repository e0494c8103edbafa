"""Drift with seeded data: shifted features are flagged, and only those."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelport.core.errors import InvalidArgument
from modelport.monitoring.drift import (
    DriftProfile,
    DriftThresholds,
    build_profile,
    compare,
    extract_features,
    psi,
)
from modelport.monitoring.profiles import ProfileStore
from modelport.monitoring.window import DriftWindow

N_FEATURES = 6
SHIFTED = {1, 4}


def reference(rng: np.random.Generator, n: int = 5000) -> np.ndarray:
    cols = [
        rng.normal(0, 1, n),
        rng.normal(10, 2, n),
        rng.exponential(1.0, n),
        rng.uniform(-1, 1, n),
        rng.lognormal(0, 0.5, n),
        rng.normal(0, 1, n),
    ]
    return np.column_stack(cols).astype(np.float32)


def shifted(rng: np.random.Generator, n: int) -> np.ndarray:
    x = reference(rng, n)
    x[:, 1] += 2.0  # one standard deviation
    x[:, 4] *= 1.8  # a scale change
    return x


@pytest.fixture(scope="module")
def profile() -> DriftProfile:
    rng = np.random.default_rng(42)
    return build_profile("credit", "3", {"x": reference(rng)})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shifted_features_and_only_those_are_flagged(profile: DriftProfile, seed: int):
    rng = np.random.default_rng(seed)
    report = compare(profile, extract_features({"x": shifted(rng, 1000)}), None)
    th = DriftThresholds().psi
    flagged = {i for i, f in enumerate(report.features) if f.drifted}
    assert flagged == SHIFTED
    for i, f in enumerate(report.features):
        assert f.name == f"x[{i}]"
        assert f.psi is not None
        assert (f.psi > th) == (i in SHIFTED), (f.name, f.psi)
        assert f.ks_pvalue is not None
        if i in SHIFTED:
            assert f.ks_pvalue < 1e-6
    assert report.drifted


@pytest.mark.parametrize("seed", [4, 5, 6, 7])
def test_same_distribution_is_not_flagged(profile: DriftProfile, seed: int):
    rng = np.random.default_rng(seed)
    report = compare(profile, extract_features({"x": reference(rng, 1000)}), None)
    assert not report.drifted
    assert max(f.psi for f in report.features if f.psi is not None) < 0.1


def test_too_few_rows_are_not_judged(profile: DriftProfile):
    rng = np.random.default_rng(0)
    report = compare(profile, extract_features({"x": shifted(rng, 50)}), None)
    assert report.window == 50
    assert not report.enough_data
    assert not report.drifted  # PSI is still computed and reported
    assert report.features[1].psi is not None
    assert report.features[1].psi > 0.2


def test_ks_alpha_opt_in_is_bonferroni_corrected(profile: DriftProfile):
    rng = np.random.default_rng(9)
    x = reference(rng, 3000)
    x[:, 0] += 0.2  # small shift: KS notices, PSI stays low
    cols = extract_features({"x": x})
    plain = compare(profile, cols, None)
    assert not plain.features[0].drifted
    strict = compare(profile, cols, None, DriftThresholds(ks_alpha=0.01))
    assert strict.features[0].drifted
    assert {i for i, f in enumerate(strict.features) if f.drifted} == {0}


def test_categorical_features_use_chi_square():
    rng = np.random.default_rng(0)
    colors = np.array([b"red", b"green", b"blue"], dtype=object)
    ref = {"color": colors[rng.choice(3, 4000, p=[0.6, 0.3, 0.1])], "n": rng.integers(0, 4, 4000)}
    p = build_profile("shop", "1", ref)
    assert [f.kind for f in p.features] == ["categorical", "categorical"]
    same = {"color": colors[rng.choice(3, 800, p=[0.6, 0.3, 0.1])], "n": rng.integers(0, 4, 800)}
    moved = {
        "color": np.concatenate([colors[rng.choice(3, 700, p=[0.2, 0.3, 0.5])], [b"purple"] * 100]),
        "n": rng.integers(0, 4, 800),
    }
    r_same = compare(p, extract_features(same), None)
    r_moved = compare(p, extract_features(moved), None)
    assert not r_same.drifted
    assert r_same.features[0].chi2_pvalue > 0.01
    assert [f.drifted for f in r_moved.features] == [True, False]
    assert r_moved.features[0].chi2_pvalue < 1e-10
    assert r_moved.features[0].ks_pvalue is None


def test_prediction_drift():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 2))
    p = build_profile("m", "1", {"x": x}, predictions=(x[:, 0] > 0).astype(np.int64))
    assert p.prediction is not None
    assert p.prediction.kind == "categorical"
    served = rng.normal(size=(1000, 2))
    served[:, 0] += 1.0
    report = compare(p, extract_features({"x": served}), (served[:, 0] > 0).astype(np.int64))
    assert report.prediction is not None
    assert report.prediction.drifted
    d = report.to_dict()
    assert d["prediction"]["name"] == "prediction"


def test_feature_names_from_signature_metadata_and_images():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3))
    cols = extract_features({"x": x}, {"x": ["age", "income", "debt"]})
    assert list(cols) == ["age", "income", "debt"]
    with pytest.raises(InvalidArgument):
        extract_features({"x": x}, {"x": ["age"]})
    img = rng.random((10, 3, 8, 8)).astype(np.float32)
    cols = extract_features({"image": img})
    assert list(cols) == ["image.mean", "image.std"]
    assert np.allclose(cols["image.mean"], img.reshape(10, -1).mean(axis=1))


def test_psi_known_values():
    assert psi([0.25] * 4, [0.25] * 4) == 0.0
    # hand computed: (0.4-0.25)ln(0.4/0.25) + (0.1-0.25)ln(0.1/0.25) twice
    expected = 2 * (0.15 * np.log(0.4 / 0.25) + (-0.15) * np.log(0.1 / 0.25))
    assert psi([0.25] * 4, [0.4, 0.1, 0.4, 0.1]) == pytest.approx(expected)
    assert np.isfinite(psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]))


def test_report_json_shape(profile: DriftProfile):
    rng = np.random.default_rng(11)
    d = compare(profile, extract_features({"x": shifted(rng, 500)}), None).to_dict()
    assert {"model", "version", "window", "drifted", "features"} <= set(d)
    assert (d["model"], d["version"], d["window"], d["drifted"]) == ("credit", "3", 500, True)
    for f in d["features"]:
        assert {"name", "psi", "ks_pvalue", "drifted"} <= set(f)
    json.dumps(d)  # plain JSON types only


def test_profile_round_trip_on_disk(tmp_path, profile: DriftProfile):
    store = ProfileStore.under_home(tmp_path)
    path = store.save(profile)
    assert path == tmp_path / "profiles" / "drift" / "credit" / "3.json"
    loaded = store.load("credit", "3")
    assert loaded == profile
    assert store.load("credit", "4") is None
    with pytest.raises(InvalidArgument):
        store.path("../etc", "1")
    path.write_text("{}")
    with pytest.raises(InvalidArgument):
        store.load("credit", "3")


def test_window_is_bounded_and_keeps_the_newest_rows(profile: DriftProfile):
    rng = np.random.default_rng(5)
    w = DriftWindow("credit", "3", capacity=1000)
    for _ in range(300):  # 3000 rows of the reference distribution …
        w.add({"x": reference(rng, 10)})
    for _ in range(100):  # … then 1000 shifted rows fill the window
        w.add({"x": shifted(rng, 10)})
    assert w.rows <= 1250 + 10  # trimmed back to 1000 once a quarter over
    report = w.report(profile)
    assert report["window"] == 1000
    assert {f["name"] for f in report["features"] if f["drifted"]} == {"x[1]", "x[4]"}


def test_window_reduces_images_at_once_and_labels_predictions():
    rng = np.random.default_rng(0)
    w = DriftWindow("cnn", "1", capacity=64, prediction_values=lambda p: p.argmax(axis=1))
    img = rng.random((4, 3, 16, 16)).astype(np.float32)
    w.add({"image": img}, rng.random((4, 10)))
    (inputs, _, n) = w._items[0]
    assert n == 4
    assert set(inputs) == {"image.mean", "image.std"}
    _cols, preds = w.snapshot()
    assert preds is not None
    assert preds.shape == (4,)
    assert preds.dtype.kind == "i"
