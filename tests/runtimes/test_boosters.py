"""LightGBM text and XGBoost JSON/UBJSON boosters: recognised, validated, run natively."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.core.errors import InvalidModel
from modelport.runtimes import LoadSpec, RuntimeOptions, formats, get_format
from modelport.runtimes.boosters import check_lightgbm_text
from tests.runtimes import models


def _sniffed(path: Path) -> list[str]:
    return [f.name for f in formats() if f.sniff(path)]


def _runtime(fmt_name: str, path: Path, sample=None):
    fmt = get_format(fmt_name)
    insp = fmt.inspect(path, sample_input=sample)
    return insp, fmt.load(
        LoadSpec(path.parent, path.name, insp.signature, insp.extra), RuntimeOptions()
    )


def test_lightgbm_text_runs_natively(tmp_path: Path):
    X, _ = models.digits()
    path = tmp_path / "digits.model"  # the extension says nothing; the content does
    models.lightgbm_booster().save_model(str(path))
    assert _sniffed(path) == ["lightgbm"]
    insp, rt = _runtime("lightgbm", path)
    assert insp.signature.inputs[0].shape == (-1, 64)
    assert [(t.name, t.shape) for t in insp.signature.outputs] == [
        ("label", (-1,)),
        ("probabilities", (-1, 10)),
    ]
    out = rt.predict({"X": X[:25]})
    want = models.lightgbm_booster().predict(X[:25])
    np.testing.assert_allclose(out["probabilities"], want)
    np.testing.assert_array_equal(out["label"], want.argmax(axis=1))


@pytest.mark.parametrize("cut", [0.2, 0.5, 0.8, 0.999])
def test_truncated_lightgbm_text_is_refused_before_lightgbm_sees_it(tmp_path: Path, cut: float):
    """LightGBM aborts the whole process on some malformed text; the check comes first."""
    text = models.lightgbm_booster().model_to_string()
    trees_end = text.index("end of trees")  # what follows is informational
    path = tmp_path / "cut.txt"
    path.write_text(text[: int(trees_end * cut)])
    with pytest.raises(InvalidModel, match="truncated or corrupt"):
        get_format("lightgbm").inspect(path)


def test_lightgbm_text_with_a_broken_tree_is_refused():
    text = models.lightgbm_booster().model_to_string()
    broken = text.replace("split_feature=", "split_featur=", 1)
    with pytest.raises(InvalidModel, match="lacks the field split_feature"):
        check_lightgbm_text(broken)
    bad_child = text.replace("left_child=", "left_child=99 ", 1)
    with pytest.raises(InvalidModel, match="left_child has"):
        check_lightgbm_text(bad_child)


def test_lightgbm_json_dump_is_recognised_and_explained(tmp_path: Path):
    import json

    path = tmp_path / "dump.json"
    path.write_text(json.dumps(models.lightgbm_booster().dump_model()))
    assert _sniffed(path) == ["lightgbm"]
    with pytest.raises(InvalidModel, match="cannot load back"):
        get_format("lightgbm").inspect(path)


@pytest.mark.parametrize("suffix", ["json", "ubj"])
def test_xgboost_json_and_ubj_run_natively(tmp_path: Path, suffix: str):
    import xgboost as xgb

    X, _ = models.cancer()
    saved = tmp_path / f"model.{suffix}"
    models.xgboost_booster().save_model(str(saved))
    path = saved.rename(tmp_path / "model.bin")  # content, not extension
    assert _sniffed(path) == ["xgboost"]
    insp, rt = _runtime("xgboost", path, {"X": X[:4]})
    assert insp.entry == f"model.{suffix}"
    assert insp.extra["objective"] == "binary:logistic"
    out = rt.predict({"X": X[:30]})
    p = models.xgboost_booster().predict(xgb.DMatrix(X[:30]))
    np.testing.assert_allclose(out["probabilities"][:, 1], p, rtol=1e-6)
    np.testing.assert_array_equal(out["label"], (p > 0.5).astype(np.int64))


def test_truncated_xgboost_json_is_refused(tmp_path: Path):
    path = tmp_path / "x.json"
    models.xgboost_booster().save_model(str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidModel, match="XGBoost cannot load it"):
        get_format("xgboost").inspect(path)
