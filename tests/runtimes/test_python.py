"""Python models: a user class with load()/predict() around another model; needs trust."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from modelport.core.errors import InvalidModel
from modelport.runtimes import LoadSpec, RuntimeOptions, formats, get_format
from modelport.runtimes.sklearn import save_skops
from tests.runtimes import models

MODEL_PY = textwrap.dedent(
    '''
    import numpy as np
    from modelport.runtimes import load_file


    class Diagnosis:
        """Scales raw measurements, runs the inner skops pipeline, names the classes."""

        names = np.array([b"malignant", b"benign"], dtype=object)

        def load(self, path):
            self.inner = load_file(path / "inner.skops", sample_input=np.zeros((1, 30), np.float32))

        def predict(self, inputs):
            out = self.inner.predict({"X": inputs["measurements"]})
            confidence = out["probabilities"].max(1)
            return {"diagnosis": self.names[out["label"]], "confidence": confidence}
    '''
)


def _model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "diagnosis"
    d.mkdir()
    (d / "model.py").write_text(MODEL_PY)
    (d / "python_model.json").write_text(json.dumps({"class": "model:Diagnosis"}))
    save_skops(models.pipeline(), d / "inner.skops")
    return d


def test_python_model_wraps_another_model(tmp_path: Path):
    X, _ = models.cancer()
    d = _model_dir(tmp_path)
    fmt = get_format("python")
    assert [f.name for f in formats() if f.sniff(d)] == ["python"]
    insp = fmt.inspect(d, sample_input={"measurements": X[:4]}, trust=True)
    assert sorted(insp.files) == ["inner.skops", "model.py", "python_model.json"]
    assert [(t.name, t.datatype) for t in insp.signature.outputs] == [
        ("diagnosis", "BYTES"),
        ("confidence", "FP32"),
    ]
    rt = fmt.load(
        LoadSpec(d, insp.entry, insp.signature, insp.extra, trusted=True), RuntimeOptions()
    )
    out = rt.predict({"measurements": X[:50]})
    expected = np.array([b"malignant", b"benign"], dtype=object)[models.pipeline().predict(X[:50])]
    assert out["diagnosis"].tolist() == expected.tolist()
    rt.close()


def test_python_models_always_need_trust(tmp_path: Path):
    d = _model_dir(tmp_path)
    (d / "model.py").write_text(
        MODEL_PY + "\nimport pathlib\npathlib.Path(__file__).with_name('ran').touch()\n"
    )
    with pytest.raises(InvalidModel, match=r"runs its code.*--trust"):
        get_format("python").inspect(d, sample_input={"measurements": np.zeros((1, 30))})
    assert not (d / "ran").exists()
    spec = LoadSpec(
        d,
        "python_model.json",
        get_format("python")
        .inspect(d, sample_input={"measurements": models.cancer()[0][:2]}, trust=True)
        .signature,
    )
    with pytest.raises(InvalidModel, match="not trusted"):
        get_format("python").load(spec, RuntimeOptions())


def test_bad_class_spec_is_an_invalid_model(tmp_path: Path):
    d = _model_dir(tmp_path)
    (d / "python_model.json").write_text(json.dumps({"class": "model"}))
    with pytest.raises(InvalidModel, match="module:Class"):
        get_format("python").inspect(d, trust=True)
    (d / "python_model.json").write_text(json.dumps({"class": "model:Missing"}))
    with pytest.raises(InvalidModel, match="no class Missing"):
        get_format("python").inspect(d, trust=True)
