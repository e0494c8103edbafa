"""Student models for distillation: what ``--distill SPEC`` builds.

SPEC is ``KIND:ARGS``:

- ``mlp:256,128`` — a PyTorch MLP with these hidden widths (ReLU), any input shape
  (flattened);
- ``cnn:16,32`` — a PyTorch CNN: one 3×3 conv + ReLU + 2×2 max-pool per channel count,
  then a linear layer; for image inputs (N, C, H, W);
- ``tree:depth=6`` — a scikit-learn decision tree, for tabular inputs (N, F);
- ``forest:n=50,depth=8`` — a scikit-learn random forest, for tabular inputs.

Tree students fit the blended soft targets by multi-output regression, so one tree
predicts the whole class distribution.

Example:
    >>> parse_student("mlp:128,64")
    StudentSpec(kind='mlp', sizes=(128, 64), depth=None, trees=None)
    >>> parse_student("forest:n=20,depth=5").trees
    20
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelport.core.errors import InvalidArgument, MissingDependency

STUDENT_KINDS = ("mlp", "cnn", "tree", "forest")


@dataclass(frozen=True)
class StudentSpec:
    """A parsed ``--distill`` specification."""

    kind: str
    sizes: tuple[int, ...] = ()
    depth: int | None = None
    trees: int | None = None

    @property
    def is_torch(self) -> bool:
        return self.kind in ("mlp", "cnn")


def parse_student(spec: str) -> StudentSpec:
    """Parse ``mlp:256,128``, ``cnn:16,32``, ``tree:depth=6`` or ``forest:n=50,depth=8``."""
    kind, _, args = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in STUDENT_KINDS:
        raise InvalidArgument(
            f"--distill {spec!r}: student kind must be one of {', '.join(STUDENT_KINDS)} "
            "(e.g. mlp:128,64, cnn:16,32, tree:depth=6, forest:n=50,depth=8)"
        )
    try:
        if kind in ("mlp", "cnn"):
            sizes = tuple(int(x) for x in args.split(",") if x.strip())
            if not sizes or min(sizes) < 1:
                raise ValueError("give at least one positive width")
            return StudentSpec(kind, sizes)
        opts = dict(kv.split("=", 1) for kv in args.split(",") if kv.strip())
        unknown = set(opts) - {"depth", "n"}
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)}; use depth= and n=")
        depth = int(opts["depth"]) if "depth" in opts else 6
        trees = int(opts["n"]) if "n" in opts else (50 if kind == "forest" else None)
        if depth < 1 or (trees is not None and trees < 1):
            raise ValueError("depth and n must be positive")
        return StudentSpec(kind, (), depth, trees)
    except ValueError as e:
        raise InvalidArgument(f"--distill {spec!r}: {e}") from e


def build_torch_student(spec: StudentSpec, input_shape: tuple[int, ...], outputs: int) -> Any:
    """The PyTorch student for one input of ``input_shape`` (without the batch axis)."""
    try:
        import torch
        from torch import nn
    except ImportError as e:
        raise MissingDependency.for_extra("torch", "torch", "PyTorch students") from e
    torch.manual_seed(0)
    layers: list[Any] = []
    if spec.kind == "cnn":
        if len(input_shape) != 3:
            raise InvalidArgument(
                f"a cnn student needs image inputs (N, C, H, W); this model takes "
                f"(N, {', '.join(map(str, input_shape))}); use an mlp student"
            )
        channels, side = input_shape[0], min(input_shape[1:])
        for width in spec.sizes:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            channels = width
            if side >= 4:  # halve the feature map while it stays at least 2×2
                layers.append(nn.MaxPool2d(2))
                side //= 2
        layers.append(nn.Flatten())
    else:
        layers.append(nn.Flatten())
    body = nn.Sequential(*layers)
    with torch.no_grad():
        width = int(body(torch.zeros(1, *input_shape)).shape[1])
    if spec.kind == "mlp":
        for hidden in spec.sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


def build_tree_student(spec: StudentSpec, seed: int = 0) -> Any:
    """The scikit-learn regressor for a ``tree`` or ``forest`` student."""
    try:
        from sklearn.ensemble import RandomForestRegressor
        from sklearn.tree import DecisionTreeRegressor
    except ImportError as e:
        raise MissingDependency.for_extra("scikit-learn", "sklearn", "Tree students") from e
    if spec.kind == "tree":
        return DecisionTreeRegressor(max_depth=spec.depth, random_state=seed)
    return RandomForestRegressor(
        n_estimators=spec.trees or 50, max_depth=spec.depth, random_state=seed, n_jobs=1
    )
