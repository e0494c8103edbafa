"""Knowledge distillation: train a small student to imitate the model (the teacher).

The teacher runs on the training inputs once; the student learns from its soft labels
(softmax of the teacher's logits at temperature T, which keeps the information in the
non-top classes) blended with the true labels of ``--train-data``:
``loss = α · CE(student, y) + (1 − α) · T² · KL(teacher_T ‖ student_T)``. For
regression and embeddings it is ``α · MSE(student, y) + (1 − α) · MSE(student,
teacher)``. Tree students fit the blended targets directly (multi-output
regression).

The student is exported to ONNX and given the teacher's interface: the same input
name and the same outputs (probabilities or logits as the teacher has them, the label
output mapped back to the teacher's class values), so it is a drop-in replacement.

Example:
    >>> Distill("mlp:64", temperature=4.0, alpha=0.3).describe()
    'distill into mlp:64 (T=4.0, α=0.3)'
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelport.core.errors import InvalidArgument, MissingDependency
from modelport.optimize.data import Dataset
from modelport.optimize.measure import predict_all
from modelport.optimize.metrics import label_output, score_output
from modelport.optimize.onnx_model import onnx_module, save_model
from modelport.optimize.passes import PassContext, PassResult
from modelport.optimize.students import (
    StudentSpec,
    build_torch_student,
    build_tree_student,
    parse_student,
)

RAW = "student_raw"


@dataclass
class TeacherHeads:
    """What the teacher outputs, so that the student can output the same."""

    score: str
    kind: str  # probabilities | logits | values
    row_shape: tuple[int, ...]
    label: str | None = None
    label_dtype: Any = None
    label_rank: int = 1
    classes: np.ndarray | None = None
    order: tuple[str, ...] = ()

    @property
    def classifier(self) -> bool:
        return self.kind != "values"


def analyse_teacher(outputs: dict[str, np.ndarray], classification: bool) -> TeacherHeads:
    """Classify the teacher's outputs (scores, labels) from its predictions."""
    score = score_output(outputs)
    label = label_output(outputs)
    extra = set(outputs) - {score, label}
    if extra:
        raise InvalidArgument(
            f"distillation reproduces one score output and one label output; this model "
            f"also has {sorted(extra)}"
        )
    s = outputs[score]
    row_shape = tuple(s.shape[1:])
    is_classifier = (classification or label is not None) and s.ndim == 2 and s.shape[1] >= 2
    kind = "values"
    if is_classifier:
        sums = s.sum(axis=1)
        kind = (
            "probabilities" if s.min() >= -1e-6 and np.allclose(sums, 1.0, atol=1e-3) else "logits"
        )
    heads = TeacherHeads(score, kind, row_shape, order=tuple(outputs))
    if label is not None:
        labels = outputs[label]
        heads.label, heads.label_dtype, heads.label_rank = label, labels.dtype, labels.ndim
        if is_classifier:
            heads.classes = _class_values(s.argmax(axis=1), labels.reshape(-1), s.shape[1])
    return heads


def _class_values(argmax: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """The label value the teacher emits for each score column."""
    values = np.arange(n).astype(labels.dtype)
    for j in range(n):
        seen = labels[argmax == j]
        if len(seen):
            uniq, counts = np.unique(seen, return_counts=True)
            values[j] = uniq[counts.argmax()]
    return values


def _soft(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class Distill:
    """Train ``student`` (see :mod:`~modelport.optimize.students`) on the teacher.

    ``threads``: PyTorch threads while training; small students train fastest on one,
    especially on a busy machine.
    """

    student: str
    temperature: float = 4.0
    alpha: float = 0.5
    epochs: int = 30
    learning_rate: float = 3e-3
    batch_size: int = 64
    threads: int = 1
    name: ClassVar[str] = "distill"

    def __post_init__(self) -> None:
        parse_student(self.student)
        if self.temperature <= 0 or not 0.0 <= self.alpha <= 1.0 or self.epochs < 1:
            raise InvalidArgument("distill: temperature > 0, 0 ≤ alpha ≤ 1 and epochs ≥ 1")

    def describe(self) -> str:
        return f"distill into {self.student} (T={self.temperature}, α={self.alpha})"

    def apply(self, src: Path, ctx: PassContext) -> PassResult:
        spec = parse_student(self.student)
        train = ctx.train
        if train is None:
            raise InvalidArgument("--distill needs --train-data (inputs, and 'y' labels ideally)")
        if len(train.inputs) != 1:
            raise InvalidArgument("distillation supports single-input models")
        ctx.progress("running the teacher on the training data")
        teacher = predict_all(src, train)
        heads = analyse_teacher(teacher, ctx.metric.name in ("accuracy", "f1"))
        notes = []
        alpha = self.alpha
        if train.labels is None and alpha > 0:
            notes.append("no labels in the training data: trained on the teacher alone")
            alpha = 0.0
        targets = self._targets(heads, teacher, train, alpha)
        raw_kind = "logits" if heads.classifier else "values"
        if spec.is_torch:
            student, loss = self._train_torch(spec, heads, targets, train, alpha, ctx)
            model = _export_torch(student, train, ctx.new_path("student"))
        else:
            model, loss = self._train_tree(spec, targets, train, ctx)
            raw_kind = "probabilities" if heads.classifier else "values"
        model = attach_heads(model, next(iter(train.inputs)), heads, raw_kind)
        out = save_model(model, ctx.new_path(f"distill-{spec.kind}"))
        details = {
            "student": self.student,
            "temperature": self.temperature,
            "alpha": alpha,
            "teacher_outputs": heads.kind,
            "train_rows": train.n,
            "final_loss": round(loss, 6),
        }
        return PassResult(out, details, notes)

    def _targets(
        self, heads: TeacherHeads, teacher: dict[str, np.ndarray], train: Dataset, alpha: float
    ) -> dict[str, np.ndarray]:
        s = teacher[heads.score].astype(np.float64)
        if not heads.classifier:
            t = s.reshape(len(s), -1)
            if train.labels is not None and alpha > 0:
                y = train.labels.reshape(len(s), -1).astype(np.float64)
                if y.shape != t.shape:
                    raise InvalidArgument(
                        f"labels have {y.shape[1]} value(s) per row, the model outputs {t.shape[1]}"
                    )
                return {"teacher": t, "y": y, "blend": alpha * y + (1 - alpha) * t}
            return {"teacher": t, "blend": t}
        logits = np.log(np.clip(s, 1e-7, 1.0)) if heads.kind == "probabilities" else s
        soft = _soft(logits, self.temperature)
        out = {"logits": logits, "soft": soft, "blend": _soft(logits, 1.0)}
        if train.labels is not None and alpha > 0:
            classes = heads.classes if heads.classes is not None else np.arange(s.shape[1])
            lookup = {v.item(): i for i, v in enumerate(classes)}
            idx = np.array([lookup.get(v.item(), -1) for v in train.labels.reshape(-1)])
            onehot = np.zeros_like(soft)
            onehot[idx >= 0, idx[idx >= 0]] = 1.0
            known = (idx >= 0)[:, None]
            out["index"] = idx
            out["blend"] = np.where(
                known, alpha * onehot + (1 - alpha) * out["blend"], out["blend"]
            )
        return out

    def _train_torch(
        self,
        spec: StudentSpec,
        heads: TeacherHeads,
        targets: dict[str, np.ndarray],
        train: Dataset,
        alpha: float,
        ctx: PassContext,
    ) -> tuple[Any, float]:
        try:
            import torch
        except ImportError as e:
            raise MissingDependency.for_extra("torch", "torch", "PyTorch students") from e
        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self._fit_torch(spec, heads, targets, train, alpha, ctx)
        finally:
            torch.set_num_threads(threads)

    def _fit_torch(
        self,
        spec: StudentSpec,
        heads: TeacherHeads,
        targets: dict[str, np.ndarray],
        train: Dataset,
        alpha: float,
        ctx: PassContext,
    ) -> tuple[Any, float]:
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.asarray(next(iter(train.inputs.values())), dtype=np.float32))
        width = targets["soft"].shape[1] if heads.classifier else targets["teacher"].shape[1]
        student = build_torch_student(spec, tuple(x.shape[1:]), width)
        opt = torch.optim.Adam(student.parameters(), lr=self.learning_rate)
        gen = torch.Generator().manual_seed(ctx.seed)
        T = self.temperature
        tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in targets.items()}
        loss_value = 0.0
        student.train()
        for epoch in range(self.epochs):
            ctx.progress(f"training the student: epoch {epoch + 1}/{self.epochs}")
            total = 0.0
            order = torch.randperm(len(x), generator=gen)
            for idx in order.split(self.batch_size):  # type: ignore[no-untyped-call]
                opt.zero_grad()
                out = student(x[idx])
                if heads.classifier:
                    soft = tensors["soft"][idx].float()
                    kl = F.kl_div(F.log_softmax(out / T, dim=1), soft, reduction="batchmean")
                    loss = (1 - alpha) * kl * T * T
                    if "index" in tensors and alpha > 0:
                        hard = F.cross_entropy(out, tensors["index"][idx], ignore_index=-1)
                        loss = loss + alpha * hard
                else:
                    loss = (1 - alpha) * F.mse_loss(out, tensors["teacher"][idx].float())
                    if "y" in tensors:
                        loss = loss + alpha * F.mse_loss(out, tensors["y"][idx].float())
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                total += float(loss.detach()) * len(idx)
            loss_value = total / len(x)
        student.eval()
        return student, loss_value

    def _train_tree(
        self, spec: StudentSpec, targets: dict[str, np.ndarray], train: Dataset, ctx: PassContext
    ) -> tuple[Any, float]:
        x = next(iter(train.inputs.values()))
        if x.ndim != 2:
            raise InvalidArgument("tree students need tabular inputs (N, features)")
        ctx.progress(f"fitting the {spec.kind} student")
        reg = build_tree_student(spec, ctx.seed)
        y = targets["blend"]
        reg.fit(x.astype(np.float32), y if y.shape[1] > 1 else y.ravel())
        loss = float(np.mean((reg.predict(x).reshape(y.shape) - y) ** 2))
        return _export_sklearn(reg, next(iter(train.inputs)), x.shape[1]), loss


def _export_torch(student: Any, train: Dataset, path: Path) -> Any:
    import torch

    name, x = next(iter(train.inputs.items()))
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated upstream but exports these plain
        # Linear/Conv stacks exactly and without extra dependencies.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            student,
            (torch.from_numpy(np.asarray(x[:1], dtype=np.float32)),),
            str(path),
            input_names=[name],
            output_names=[RAW],
            dynamic_axes={name: {0: "batch"}, RAW: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return onnx_module().load_model(str(path))


def _export_sklearn(reg: Any, input_name: str, features: int) -> Any:
    try:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError as e:
        raise MissingDependency.for_extra("skl2onnx", "sklearn", "Tree students") from e
    model = to_onnx(
        reg,
        initial_types=[(input_name, FloatTensorType([None, features]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    _rename(model.graph, model.graph.output[0].name, RAW)
    return model


def _rename(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for i, t in enumerate(node.input):
            if t == old:
                node.input[i] = new
        for i, t in enumerate(node.output):
            if t == old:
                node.output[i] = new
    for vi in (*graph.input, *graph.output):
        if vi.name == old:
            vi.name = new


def attach_heads(model: Any, input_name: str, heads: TeacherHeads, raw_kind: str) -> Any:
    """Give the student the teacher's outputs, computed from its raw output."""
    onnx = onnx_module()
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    model = onnx.compose.add_prefix(model, "student/")
    _rename(model.graph, "student/" + input_name, input_name)
    raw = "student/" + RAW
    nodes, inits = [], []
    score_src = raw
    if heads.kind == "probabilities" and raw_kind == "logits":
        nodes.append(helper.make_node("Softmax", [raw], ["head/probs"], axis=1))
        score_src = "head/probs"
    elif heads.kind == "logits" and raw_kind == "probabilities":
        inits += [numpy_helper.from_array(np.array(1e-7, np.float32), "head/eps")]
        nodes.append(helper.make_node("Clip", [raw, "head/eps"], ["head/clipped"]))
        nodes.append(helper.make_node("Log", ["head/clipped"], ["head/logp"]))
        score_src = "head/logp"
    elif heads.kind == "values" and len(heads.row_shape) != 1:
        shape = np.array([-1, *heads.row_shape], np.int64)
        inits.append(numpy_helper.from_array(shape, "head/shape"))
        nodes.append(helper.make_node("Reshape", [raw, "head/shape"], ["head/values"]))
        score_src = "head/values"
    nodes.append(helper.make_node("Identity", [score_src], [heads.score]))
    outputs = {
        heads.score: helper.make_tensor_value_info(
            heads.score, onnx.TensorProto.FLOAT, ["batch", *heads.row_shape]
        )
    }
    if heads.label is not None and heads.classes is not None:
        classes = heads.classes.astype(heads.label_dtype)
        inits.append(numpy_helper.from_array(classes, "head/classes"))
        nodes.append(helper.make_node("ArgMax", [raw], ["head/argmax"], axis=1, keepdims=0))
        label_src = "head/label"
        nodes.append(helper.make_node("Gather", ["head/classes", "head/argmax"], [label_src]))
        if heads.label_rank == 2:
            inits.append(numpy_helper.from_array(np.array([-1, 1], np.int64), "head/col"))
            nodes.append(helper.make_node("Reshape", [label_src, "head/col"], ["head/label2"]))
            label_src = "head/label2"
        nodes.append(helper.make_node("Identity", [label_src], [heads.label]))
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(heads.label_dtype))
        dims: list[Any] = ["batch"] if heads.label_rank == 1 else ["batch", 1]
        outputs[heads.label] = helper.make_tensor_value_info(heads.label, elem, dims)
    elif heads.label is not None:
        raise InvalidArgument("the teacher's label output could not be matched to its scores")
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    del model.graph.output[:]
    model.graph.output.extend(outputs[n] for n in heads.order if n in outputs)
    return load_model_checked(model)


def load_model_checked(model: Any) -> Any:
    """Run the ONNX checker on an assembled model (fail early with a clear error)."""
    onnx = onnx_module()
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise InvalidArgument(f"the distilled student is not a valid ONNX model: {e}") from e
    return model
