"""PyTorch: TorchScript and torch.export files run safely; pickles only with trust."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from modelport.core.errors import InvalidArgument, InvalidModel
from modelport.runtimes import LoadSpec, RuntimeOptions, formats, get_format
from modelport.runtimes.torch_tools import export_program, save_program, trace_module
from tests.runtimes import models

torch = pytest.importorskip("torch")


def _eager(module, *arrays):
    with torch.no_grad():
        return module(*(torch.from_numpy(a) for a in arrays))


def _load(fmt_name: str, path: Path, insp, trusted: bool = False):
    spec = LoadSpec(path.parent, path.name, insp.signature, insp.extra, trusted=trusted)
    return get_format(fmt_name).load(spec, RuntimeOptions())


@pytest.fixture(scope="module")
def text_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    program = export_program(models.text_model(), models.text_sample(), keywords=True)
    return save_program(program, tmp_path_factory.mktemp("torch") / "text.pt2")


def test_torchscript_signature_comes_from_probing_the_sample(tmp_path: Path):
    X, _ = models.digits()
    path = tmp_path / "mlp.pt"
    trace_module(models.mlp(), {"x": X[:4]}).save(str(path))
    assert [f.name for f in formats() if f.sniff(path)] == ["torchscript"]
    fmt = get_format("torchscript")
    with pytest.raises(InvalidArgument, match="sample input"):
        fmt.inspect(path)
    insp = fmt.inspect(path, sample_input={"x": X[:5]})
    assert [(t.name, t.shape) for t in insp.signature.inputs] == [("x", (-1, 64))]
    assert [(t.name, t.shape) for t in insp.signature.outputs] == [("output", (-1, 10))]
    assert insp.extra["shape_probes"] == {"batch": "dynamic", "axis 1 of x": "static"}
    out = _load("torchscript", path, insp).predict({"x": X[:7]})
    np.testing.assert_allclose(out["output"], _eager(models.mlp(), X[:7]).numpy(), atol=1e-6)


def test_exported_program_records_dynamic_batch_and_sequence_axes(text_pt2: Path):
    fmt = get_format("torch-export")
    assert fmt.sniff(text_pt2)
    insp = fmt.inspect(text_pt2)  # the program's own example inputs name the outputs
    sig = insp.signature
    assert [(t.name, t.datatype, t.shape) for t in sig.inputs] == [
        ("input_ids", "INT64", (-1, -1)),
        ("attention_mask", "INT64", (-1, -1)),
    ]
    assert [(t.name, t.shape) for t in sig.outputs] == [("logits", (-1, 10)), ("pooled", (-1, 16))]
    rt = _load("torch-export", text_pt2, insp)
    for rows, length in ((1, 5), (3, 64)):
        sample = models.text_sample(rows, length)
        got = rt.predict(sample)
        want = _eager(models.text_model(), sample["input_ids"], sample["attention_mask"])
        np.testing.assert_allclose(got["logits"], want["logits"].numpy(), atol=1e-5)


def test_exported_program_with_a_pickled_payload_is_refused(text_pt2: Path, tmp_path: Path):
    """torch.export.load unpickles some members with full powers; modelport checks first."""
    canary = tmp_path / "canary"
    payload = io.BytesIO()
    torch.save(models.Canary(canary), payload)
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(text_pt2) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("sample_inputs/model.pt"):
                data = payload.getvalue()
            dst.writestr(item, data)
    with pytest.raises(InvalidModel, match=r"unpickle with full Python powers.*(posix|nt)\.mkdir"):
        get_format("torch-export").inspect(bad)
    assert not canary.exists()
    # without the check, PyTorch's own loader runs the payload
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever follows the payload
        torch.export.load(str(bad))
    assert canary.exists()


def test_pickled_modules_need_trust_and_state_dicts_are_not_models(tmp_path: Path):
    canary = tmp_path / "canary"
    path = models.malicious_torch_pickle(tmp_path / "model.pth", canary)
    fmt = get_format("torch-pickle")
    assert [f.name for f in formats() if f.sniff(path)] == ["torch-pickle"]
    with pytest.raises(InvalidModel, match=r"pickled module .*(posix|nt)\.mkdir.*--trust"):
        fmt.inspect(path, sample_input={"input": models.digits()[0][:2]})
    assert not canary.exists()

    torch.save(models.mlp().state_dict(), str(tmp_path / "weights.pth"))
    assert fmt.sniff(tmp_path / "weights.pth")
    with pytest.raises(InvalidModel, match="only weights"):
        fmt.inspect(tmp_path / "weights.pth", trust=True)

    torch.save(models.mlp(), str(tmp_path / "mlp.pth"))
    X, _ = models.digits()
    insp = fmt.inspect(tmp_path / "mlp.pth", sample_input={"input": X[:4]}, trust=True)
    assert insp.extra["requires_trust"] is True
    rt = _load("torch-pickle", tmp_path / "mlp.pth", insp, trusted=True)
    np.testing.assert_allclose(
        rt.predict({"input": X[:3]})["output"], _eager(models.mlp(), X[:3]).numpy(), atol=1e-6
    )


@pytest.mark.parametrize("cut", [0.5, 0.95])
def test_truncated_torch_files_fail_cleanly(text_pt2: Path, tmp_path: Path, cut: float):
    data = text_pt2.read_bytes()
    bad = tmp_path / "cut.pt2"
    bad.write_bytes(data[: int(len(data) * cut)])
    fmt = get_format("torch-export")
    if fmt.sniff(bad):
        with pytest.raises(InvalidModel):
            fmt.inspect(bad)
    else:
        assert not any(f.sniff(bad) for f in formats())
