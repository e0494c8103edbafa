"""``--auto``: search pass combinations, keep the fastest model that passes the gate.

The search looks at the model first and only tries what can apply:

1. single passes — structured pruning at 30/50/70 % (when the graph has prunable
   layer chains), dropping 1 (and 2) repeated blocks (when it has them), low-rank
   factorization at 90 % energy, dynamic int8, static int8 (when calibration or
   training data is given) and offline graph optimization;
2. combinations — the most aggressive structural passes that passed the gate, chained
   with each other and with each quantization that passed.

Every candidate is evaluated on the validation data; then all of them and the parent
are timed together (interleaved, same settings). The fastest candidate at the largest
batch size that passes the gate (and beats the parent there) is registered, and the
report shows every candidate with the Pareto front of speed against the metric.
fp16 is not tried: on CPUs it is slower; ask for it explicitly for GPU targets.

Example:
    >>> opts = OptimizeOptions(Path("val.npz"), "cosine", 0.01)                # doctest: +SKIP
    >>> outcome = auto_optimize(reg, "encoder:1", opts, publish=publish)      # doctest: +SKIP
    >>> outcome.report.pareto                                                 # doctest: +SKIP
    ['parent', 'quantize dynamic', 'drop 1 block(s) + quantize dynamic']
"""

from __future__ import annotations

from collections.abc import Sequence

from modelport.core.errors import ModelportError
from modelport.optimize.drop_layers import DropLayers, find_blocks
from modelport.optimize.graph import GraphOptimize
from modelport.optimize.low_rank import LowRank
from modelport.optimize.onnx_model import load_model
from modelport.optimize.passes import Pass, ProgressFn
from modelport.optimize.pipeline import (
    ChainResult,
    ModelSource,
    OptimizeOptions,
    Outcome,
    Publish,
    Session,
    session,
)
from modelport.optimize.prune import Prune, find_chains
from modelport.optimize.quantize import Quantize
from modelport.optimize.report import VersionEntry

PRUNE_LEVELS = (0.3, 0.5, 0.7)


def first_stage(s: Session) -> list[tuple[Pass, ...]]:
    """Single-pass candidates that apply to this model."""
    model = load_model(s.path)
    plans: list[tuple[Pass, ...]] = []
    if find_chains(model):
        plans += [(Prune(level, structured=True),) for level in PRUNE_LEVELS]
    blocks = len(find_blocks(model))
    if blocks >= 2:
        plans += [(DropLayers(k),) for k in (1, 2) if k < blocks and k <= blocks // 2]
    ops = {n.op_type for n in model.graph.node}
    if ops & {"Gemm", "MatMul"}:
        plans.append((LowRank(energy=0.9),))
    if ops & {"Gemm", "MatMul", "Conv"}:
        plans.append((Quantize("dynamic"),))
        if s.calibration is not None or s.train is not None:
            plans.append((Quantize("static"),))
    plans.append((GraphOptimize("extended"),))
    return plans


def _strongest(passed: Sequence[ChainResult], kind: type) -> ChainResult | None:
    """The passing single structural pass of ``kind`` that removes the most."""
    found = [r for r in passed if len(r.passes) == 1 and isinstance(r.passes[0], kind)]
    if not found:
        return None
    if kind is Prune:
        return max(found, key=lambda r: getattr(r.passes[0], "sparsity", 0.0))
    if kind is DropLayers:
        return max(found, key=lambda r: getattr(r.passes[0], "count", 0))
    return found[0]


def second_stage(passed: Sequence[ChainResult]) -> list[tuple[Pass, ...]]:
    """Combinations of the passes that passed the gate alone."""
    strongest = [_strongest(passed, k) for k in (DropLayers, Prune, LowRank)]
    bases = [r.passes for r in strongest if r is not None]
    if len(bases) >= 2:
        bases.append(bases[0] + bases[1])
    quants = [r.passes for r in passed if len(r.passes) == 1 and isinstance(r.passes[0], Quantize)]
    plans = [base + q for base in bases for q in quants]
    if len(bases) >= 3:
        plans.append(bases[-1])
    return plans


def pareto_front(entries: Sequence[VersionEntry], batch: int) -> list[str]:
    """Labels of the entries no other entry beats on both latency and metric drop.

    Example:
        >>> pareto_front(entries, 32)                   # doctest: +SKIP
        ['parent', 'quantize dynamic']
    """
    points = [(e.latency_ms(batch), e.metric_drop, e.label) for e in entries]
    valid = [(ms, drop, lbl) for ms, drop, lbl in points if ms is not None]
    front = []
    for ms, drop, lbl in valid:
        dominated = any(
            (o_ms <= ms and o_drop <= drop) and (o_ms < ms or o_drop < drop)
            for o_ms, o_drop, _ in valid
        )
        if not dominated:
            front.append((ms, lbl))
    return [lbl for _, lbl in sorted(front)]


def auto_optimize(
    source: ModelSource,
    ref: str,
    options: OptimizeOptions,
    *,
    publish: Publish | None = None,
    progress: ProgressFn | None = None,
) -> Outcome:
    """Search, measure, and register the fastest candidate that passes the gate.

    Example:
        >>> out = auto_optimize(reg, "enc:1", opts, publish=publish)   # doctest: +SKIP
        >>> out.report.entry(out.report.chosen).passes                # doctest: +SKIP
        ['drop 1 block(s)', 'quantize static minmax']
    """
    with session(source, ref, options, progress) as s:
        results: list[ChainResult] = []
        failures: list[str] = []
        tried: set[tuple[Pass, ...]] = set()

        def run(plans: Sequence[tuple[Pass, ...]]) -> None:
            for i, plan in enumerate(plans, 1):
                if plan in tried:
                    continue
                tried.add(plan)
                label = " + ".join(p.describe() for p in plan)
                s.progress(f"candidate {len(tried)}: {label} ({i}/{len(plans)} of this stage)")
                try:
                    result = s.evaluate(plan)
                except ModelportError as e:
                    failures.append(f"{label}: {e}")
                    continue
                idle = [st["pass"] for st in result.steps if not st["changed"]]
                if idle:
                    failures.append(f"{label}: {', '.join(idle)} changed nothing")
                else:
                    results.append(result)

        run(first_stage(s))
        run(second_stage([r for r in results if s.passes_gate(r)]))
        labels = [f"c{i}" for i in range(1, len(results) + 1)]
        entries = s.entries(results, labels) if results else s.entries([], [])
        big = max(options.measure.batch_sizes)
        parent_ms = entries[0].latency_ms(big) or float("inf")
        passing = [e for e in entries[1:] if e.passed_gate and (e.latency_ms(big) or 0) < parent_ms]
        best = min(
            passing,
            key=lambda e: (e.latency_ms(big) or float("inf"), e.size_bytes),
            default=None,
        )
        chosen_result = None
        if best is not None:
            chosen_result = results[labels.index(best.label)]
        report = s.report(entries, best.label if best else None, "auto")
        report.pareto = pareto_front(entries, big)
        report.notes += [f"not applicable: {f}" for f in failures]
        return s.finish(report, chosen_result, publish)
