"""scikit-learn: skops under a server-side type policy, pickles only with trust."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from modelport.core.errors import InvalidModel
from modelport.runtimes import LoadSpec, RuntimeOptions, formats, get_format
from modelport.runtimes._pickles import describe_file, scan_pickle
from modelport.runtimes.sklearn import TRUSTED_TYPES, save_skops
from tests.runtimes import models


def _inspect_and_load(fmt_name: str, path: Path, sample=None, trust=False):
    fmt = get_format(fmt_name)
    insp = fmt.inspect(path, sample_input=sample, trust=trust)
    spec = LoadSpec(path.parent, path.name, insp.signature, insp.extra, trusted=trust)
    return insp, fmt.load(spec, RuntimeOptions())


def test_skops_pipeline_runs_natively_with_a_signature_from_the_sample(tmp_path: Path):
    X, _ = models.cancer()
    path = save_skops(models.pipeline(), tmp_path / "pipe.skops")
    assert [f.name for f in formats() if f.sniff(path)] == ["sklearn"]
    insp, rt = _inspect_and_load("sklearn", path, {"X": X[:10]})
    assert [(t.name, t.shape) for t in insp.signature.inputs] == [("X", (-1, 30))]
    assert [t.name for t in insp.signature.outputs] == ["label", "probabilities"]
    assert insp.extra["classes"] == [0, 1]
    out = rt.predict({"X": X[:20].astype(np.float64)})  # cast to the signature's FP32
    np.testing.assert_array_equal(out["label"], models.pipeline().predict(X[:20]))
    np.testing.assert_allclose(out["probabilities"], models.pipeline().predict_proba(X[:20]))


def test_skops_without_a_sample_uses_the_estimators_feature_count(tmp_path: Path):
    path = save_skops(models.forest(), tmp_path / "rf.skops")
    insp = get_format("sklearn").inspect(path)
    assert insp.signature.inputs[0].shape == (-1, 30)
    assert "sklearn.tree._tree.Tree" in TRUSTED_TYPES  # needed by every forest


def test_skops_types_outside_the_policy_are_refused_unless_trusted(tmp_path: Path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    X, y = models.cancer()
    risky = make_pipeline(
        FunctionTransformer(np.nan_to_num), StandardScaler(), LogisticRegression(max_iter=300)
    )
    risky.fit(np.abs(X), y)
    path = save_skops(risky, tmp_path / "risky.skops")
    with pytest.raises(InvalidModel, match=r"outside the trusted policy: numpy\.nan_to_num"):
        get_format("sklearn").inspect(path, sample_input={"X": np.abs(X[:5])})
    insp, rt = _inspect_and_load("sklearn", path, {"X": np.abs(X[:5])}, trust=True)
    assert insp.extra["requires_trust"] is True
    assert insp.extra["untrusted_types"] == ["numpy.nan_to_num"]
    assert rt.predict({"X": np.abs(X[:3])})["label"].shape == (3,)
    # the loaded version refuses to run when the registry did not record trust
    spec = LoadSpec(tmp_path, "risky.skops", insp.signature, insp.extra, trusted=False)
    with pytest.raises(InvalidModel, match="outside the trusted policy"):
        get_format("sklearn").load(spec, RuntimeOptions())


def test_skops_file_cannot_widen_its_own_trust(tmp_path: Path):
    """The policy is code; a schema claiming trusted types changes nothing."""
    import zipfile

    from sklearn.preprocessing import FunctionTransformer

    path = save_skops(FunctionTransformer(os.system), tmp_path / "evil.skops")
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("trusted.json", '["posix.system", "nt.system"]')
    with pytest.raises(InvalidModel, match="system"):
        get_format("sklearn").inspect(path, sample_input={"X": np.zeros((1, 1))})


@pytest.mark.parametrize("writer", [models.malicious_joblib, models.malicious_pickle])
def test_pickles_are_recognised_by_their_opcodes_and_refused_without_trust(tmp_path: Path, writer):
    canary = tmp_path / "canary"
    path = writer(tmp_path / "model.joblib", canary)
    fmt = get_format("sklearn-pickle")
    assert fmt.sniff(path)
    with pytest.raises(InvalidModel, match=r"pickle \(it imports (posix|nt)\.mkdir.*--trust"):
        fmt.inspect(path, sample_input={"X": models.cancer()[0][:3]})
    assert not canary.exists()
    assert ".mkdir" in describe_file(path)
    assert not canary.exists()


def test_trusted_joblib_runs_natively(tmp_path: Path):
    import joblib

    X, _ = models.cancer()
    joblib.dump(models.forest(), tmp_path / "rf.joblib")
    insp, rt = _inspect_and_load("sklearn-pickle", tmp_path / "rf.joblib", {"X": X[:5]}, True)
    assert insp.extra["requires_trust"] is True
    np.testing.assert_array_equal(rt.predict({"X": X[:9]})["label"], models.forest().predict(X[:9]))
    spec = LoadSpec(tmp_path, "rf.joblib", insp.signature, insp.extra, trusted=False)
    with pytest.raises(InvalidModel, match="not trusted"):
        get_format("sklearn-pickle").load(spec, RuntimeOptions())


def test_compressed_joblib_is_recognised_without_unpickling(tmp_path: Path):
    import joblib

    joblib.dump(models.forest(), tmp_path / "rf.joblib.z", compress=3)
    assert get_format("sklearn-pickle").sniff(tmp_path / "rf.joblib.z")


@pytest.mark.parametrize("cut", [0.3, 0.9])
def test_truncated_skops_files_fail_cleanly(tmp_path: Path, cut: float):
    data = save_skops(models.pipeline(), tmp_path / "p.skops").read_bytes()
    bad = tmp_path / "bad.skops"
    bad.write_bytes(data[: int(len(data) * cut)])
    fmt = get_format("sklearn")
    if fmt.sniff(bad):
        with pytest.raises(InvalidModel):
            fmt.inspect(bad, sample_input={"X": models.cancer()[0][:3]})
    else:
        assert not any(f.sniff(bad) for f in formats())


def test_pickle_scan_sees_stack_globals_through_the_memo():
    import pickle

    data = pickle.dumps([os.getcwd, os.getcwd, os.path.join], protocol=4)
    scan = scan_pickle(data)
    assert scan.complete
    assert {"posix.getcwd", "posixpath.join"} <= set(scan.globals) or {
        "nt.getcwd",
        "ntpath.join",
    } <= set(scan.globals)
    assert not scan_pickle(data[: len(data) // 2]).complete
