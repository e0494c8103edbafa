"""Low-rank factorization of large Gemm/MatMul weights (truncated SVD).

A weight W (m × n) is replaced by A (m × r) and B (r × n) from its singular value
decomposition, so ``x @ W`` becomes ``(x @ A) @ B``: r·(m + n) multiply-adds per row
instead of m·n. That only pays when r is well below m·n / (m + n), so a layer is
factorized only when it saves at least ``min_saving`` of its compute; others are
left as they were. The rank comes from a ratio of the full rank (``ratio``) or from
the share of the squared singular values to keep (``energy``, e.g. 0.9).

Example:
    >>> LowRank(ratio=0.25).describe()
    'low-rank ratio 0.25'
    >>> LowRank(energy=0.9).describe()
    'low-rank energy 0.9'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from modelport.core.errors import InvalidArgument
from modelport.optimize.onnx_model import (
    GraphIndex,
    attribute,
    load_model,
    onnx_module,
    save_model,
    set_attribute,
)
from modelport.optimize.passes import PassContext, PassResult


def choose_rank(s: np.ndarray, ratio: float | None, energy: float | None) -> int:
    """Rank to keep for singular values ``s`` (descending).

    Example:
        >>> choose_rank(np.array([3.0, 1.0, 0.1]), None, 0.9)
        1
        >>> choose_rank(np.array([3.0, 1.0, 0.1]), 0.5, None)
        2
    """
    if energy is not None:
        total = float(np.sum(s**2))
        if total == 0.0:
            return 1
        cumulative = np.cumsum(s**2) / total
        return int(np.searchsorted(cumulative, energy - 1e-12) + 1)
    if ratio is None:
        raise InvalidArgument("give a rank ratio or an energy share")
    return max(1, math.ceil(ratio * len(s)))


@dataclass(frozen=True)
class LowRank:
    """Factorize Gemm/MatMul weights by rank ``ratio`` or kept ``energy``."""

    ratio: float | None = None
    energy: float | None = None
    min_saving: float = 0.2
    min_dim: int = 16
    name: ClassVar[str] = "low_rank"

    def __post_init__(self) -> None:
        if (self.ratio is None) == (self.energy is None):
            raise InvalidArgument("give either --low-rank RATIO or --low-rank-energy E")
        value = self.ratio if self.ratio is not None else self.energy
        if value is None or not 0.0 < value < 1.0:
            raise InvalidArgument(f"low-rank {value}: must be between 0 and 1")

    def describe(self) -> str:
        return (
            f"low-rank ratio {self.ratio}"
            if self.ratio is not None
            else (f"low-rank energy {self.energy}")
        )

    def apply(self, src: Path, ctx: PassContext) -> PassResult:
        onnx = onnx_module()
        model = load_model(src)
        g = GraphIndex(model)
        layers, skipped = [], 0
        candidates = [n for n in model.graph.node if n.op_type in ("Gemm", "MatMul")]
        for i, node in enumerate(candidates, 1):
            ctx.progress(f"factorizing weight {i}/{len(candidates)}")
            if len(node.input) < 2 or attribute(node, "transA", 0):
                continue
            w = g.const(node.input[1])
            if w is None or w.ndim != 2 or w.dtype.kind != "f" or min(w.shape) < self.min_dim:
                continue
            trans = node.op_type == "Gemm" and bool(attribute(node, "transB", 0))
            mat = (w.T if trans else w).astype(np.float64)  # (in, out)
            u, s, vt = np.linalg.svd(mat, full_matrices=False)
            rank = choose_rank(s, self.ratio, self.energy)
            m, n = mat.shape
            if rank * (m + n) > (1.0 - self.min_saving) * m * n:
                skipped += 1
                continue
            root = np.sqrt(s[:rank])
            first = (u[:, :rank] * root).astype(w.dtype)
            second = (root[:, None] * vt[:rank]).astype(w.dtype)
            mid = g.unique_name(f"{node.name or node.op_type}_lowrank")
            first_name = g.add_initializer(f"{node.input[1]}_U", first)
            matmul = onnx.helper.make_node(
                "MatMul", [node.input[0], first_name], [mid], name=f"{mid}_MatMul"
            )
            g.rename_input(node, node.input[0], mid)
            g.set_input_const(node, 1, second)
            if trans:
                set_attribute(node, "transB", 0)
            pos = next(k for k, n_ in enumerate(model.graph.node) if n_ is node)
            model.graph.node.insert(pos, matmul)
            kept = float(np.sum(s[:rank] ** 2) / max(np.sum(s**2), 1e-30))
            layers.append(
                {
                    "node": node.name or node.op_type,
                    "shape": [m, n],
                    "rank": rank,
                    "energy_kept": round(kept, 4),
                    "compute_ratio": round(rank * (m + n) / (m * n), 3),
                }
            )
            g.refresh()
        g.remove_unused()
        out = save_model(model, ctx.new_path("low-rank"))
        notes = []
        if not layers:
            notes.append("no weight where the chosen rank saves compute: model unchanged")
        details = {"layers": layers, "skipped_no_saving": skipped}
        return PassResult(out, details, notes, changed=bool(layers))
