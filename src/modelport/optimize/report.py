"""Optimization reports: one record per version compared, as JSON, Markdown and HTML.

A report lists the parent and every candidate side by side — size, parameters,
latency at each batch size (and its ratio to the parent), the metric and its drop,
parity with the parent — plus the passes with their details, the gate's verdict and
how the measurement was made. :meth:`Report.write` saves ``report.json``,
``report.md``, ``report.html`` (self-contained) and ``metric_vs_latency.png``.

Example:
    >>> paths = report.write(Path("reports/mlp-1"))   # doctest: +SKIP
    >>> sorted(paths)                                  # doctest: +SKIP
    ['html', 'json', 'markdown', 'plot']
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.optimize.measure import LatencyStats
from modelport.optimize.metrics import MetricSpec

SCHEMA = "modelport.optimize.report/v1"
PLOT_FILE = "metric_vs_latency.png"


@dataclass
class VersionEntry:
    """One model in the comparison (the parent or a candidate)."""

    label: str
    passes: list[str]
    size_bytes: int
    params: int
    nonzero_params: int
    latency: dict[int, LatencyStats]
    metric: float
    metric_drop: float
    parity: dict[str, Any] = field(default_factory=dict)
    passed_gate: bool | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def latency_ms(self, batch: int) -> float | None:
        stats = self.latency.get(batch)
        return None if stats is None else stats.median_ms

    def to_dict(self, parent: VersionEntry | None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "label": self.label,
            "passes": self.passes,
            "size_bytes": self.size_bytes,
            "params": self.params,
            "nonzero_params": self.nonzero_params,
            "latency_ms": {str(b): s.to_dict() for b, s in sorted(self.latency.items())},
            "metric": round(self.metric, 6),
            "metric_drop": round(self.metric_drop, 6),
            "parity": self.parity,
            "passed_gate": self.passed_gate,
        }
        if parent is not None and parent is not self:
            d["size_ratio"] = round(self.size_bytes / max(parent.size_bytes, 1), 4)
            d["speedup"] = {
                str(b): round(p.median_ms / s.median_ms, 3)
                for b, s in sorted(self.latency.items())
                if (p := parent.latency.get(b)) is not None and s.median_ms > 0
            }
        if self.steps:
            d["steps"] = self.steps
        if self.error:
            d["error"] = self.error
        return d


@dataclass
class Report:
    """Everything an optimization run measured and decided."""

    parent: str
    metric: MetricSpec
    max_drop: float
    versions: list[VersionEntry]
    chosen: str | None
    gate_passed: bool
    measurement: dict[str, Any]
    data: dict[str, Any]
    tool_versions: dict[str, str]
    created_at: str
    mode: str = "passes"  # passes | auto
    pareto: list[str] = field(default_factory=list)
    registered: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def parent_entry(self) -> VersionEntry:
        return self.versions[0]

    def entry(self, label: str | None) -> VersionEntry | None:
        return next((v for v in self.versions if v.label == label), None)

    @property
    def batch_sizes(self) -> list[int]:
        return sorted(self.parent_entry.latency)

    def to_dict(self) -> dict[str, Any]:
        parent = self.parent_entry
        return {
            "schema": SCHEMA,
            "created_at": self.created_at,
            "mode": self.mode,
            "parent": self.parent,
            "metric": {
                "name": self.metric.name,
                "higher_is_better": self.metric.higher_is_better,
                "max_drop": self.max_drop,
            },
            "gate": {"passed": self.gate_passed, "chosen": self.chosen},
            "registered": self.registered,
            "versions": [v.to_dict(parent) for v in self.versions],
            "pareto": self.pareto,
            "measurement": self.measurement,
            "data": self.data,
            "tool_versions": self.tool_versions,
            "notes": self.notes,
            "files": self.files,
        }

    # ------------------------------------------------------------------ text

    def verdict(self) -> str:
        chosen = self.entry(self.chosen)
        name = self.metric.name
        if chosen is None:
            return (
                f"REJECTED: no candidate kept {name} within a drop of {self.max_drop:g} "
                "and ran faster than the parent"
            )
        word = "PASSED" if self.gate_passed else "REJECTED"
        sign = "≤" if self.gate_passed else ">"
        return (
            f"{word}: {name} drop {chosen.metric_drop:.4g} {sign} max {self.max_drop:g} "
            f"({self.parent_entry.metric:.4g} → {chosen.metric:.4g})"
        )

    def rows(self) -> tuple[list[str], list[list[str]]]:
        """Column names and formatted rows of the side-by-side table."""
        parent = self.parent_entry
        columns = ["version", "passes", "size", "params"]
        for b in self.batch_sizes:
            columns += [f"latency b{b} (ms)", f"speed-up b{b}"]
        columns += [self.metric.name, "drop", "gate"]
        rows = []
        for v in self.versions:
            row = [
                v.label + (" ★" if v.label == self.chosen else ""),
                ", ".join(v.passes) or "—",
                _size(v.size_bytes),
                f"{v.params:,}"
                + (f" ({v.nonzero_params:,} ≠0)" if v.nonzero_params < v.params else ""),
            ]
            for b in self.batch_sizes:
                ms, base = v.latency_ms(b), parent.latency_ms(b)
                row.append("—" if ms is None else f"{ms:.4g}")
                row.append("—" if not ms or base is None else f"{base / ms:.2f}×")
            gate = "" if v.passed_gate is None else ("pass" if v.passed_gate else "fail")
            row += [f"{v.metric:.4f}", f"{v.metric_drop:+.4f}", v.error or gate]
            rows.append(row)
        return columns, rows

    def markdown(self, plot: str | None = PLOT_FILE) -> str:
        columns, rows = self.rows()
        out = [
            f"# Optimization of {self.parent}",
            "",
            f"**Gate:** {self.verdict()}  ",
            f"**Registered:** {self.registered or 'nothing'}  ",
            f"**Metric:** {self.metric.name} — {self.metric.description}",
            "",
            "| " + " | ".join(columns) + " |",
            "|" + "---|" * len(columns),
            *("| " + " | ".join(r) + " |" for r in rows),
            "",
        ]
        if self.pareto:
            out += [f"Pareto front (speed vs {self.metric.name}): {', '.join(self.pareto)}", ""]
        chosen = self.entry(self.chosen)
        if chosen and chosen.steps:
            out += ["## Passes", ""]
            for i, step in enumerate(chosen.steps, 1):
                out.append(f"{i}. **{step['pass']}** ({step['seconds']:.2f} s)")
                for note in step.get("notes", []):
                    out.append(f"   - {note}")
                out.append(f"   - `{json.dumps(step.get('details', {}), default=str)[:600]}`")
            out.append("")
        if chosen and chosen.parity:
            out += ["## Parity with the parent", ""]
            out += [f"- {k}: {_num(v)}" for k, v in chosen.parity.items()]
            out.append("")
        out += ["## Measurement", ""]
        out += [f"- {k}: {v}" for k, v in self.measurement.items()]
        out += [f"- {k}: {v}" for k, v in self.data.items()]
        out.append("- tools: " + ", ".join(f"{k} {v}" for k, v in self.tool_versions.items()))
        out += [f"- note: {n}" for n in self.notes]
        if plot:
            out += ["", f"![{self.metric.name} vs latency]({plot})"]
        return "\n".join(out) + "\n"

    def html(self, png: bytes | None) -> str:
        columns, rows = self.rows()
        e = html.escape
        head = "".join(f"<th>{e(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
        img = (
            f'<img alt="metric vs latency" src="data:image/png;base64,'
            f'{base64.b64encode(png).decode()}">'
            if png
            else ""
        )
        details = e(json.dumps(self.to_dict(), indent=2, default=str))
        return (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>Optimization of {e(self.parent)}</title><style>"
            "body{font-family:system-ui,sans-serif;margin:2em;max-width:75em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;"
            "text-align:right}th{background:#f3f3f3}pre{background:#f8f8f8;padding:1em;"
            "overflow:auto}</style></head><body>"
            f"<h1>Optimization of {e(self.parent)}</h1>"
            f"<p><b>Gate:</b> {e(self.verdict())}<br><b>Registered:</b> "
            f"{e(self.registered or 'nothing')}</p>"
            f"<table><tr>{head}</tr>{body}</table>{img}"
            f"<h2>Full report</h2><pre>{details}</pre></body></html>"
        )

    # ------------------------------------------------------------------ files

    def write(self, dest: Path) -> dict[str, Path]:
        """Write JSON, Markdown, HTML and the plot into ``dest``; return their paths."""
        dest.mkdir(parents=True, exist_ok=True)
        paths = {"json": dest / "report.json", "markdown": dest / "report.md"}
        paths["html"] = dest / "report.html"
        png = plot_png(self)
        if png is not None:
            paths["plot"] = dest / PLOT_FILE
            paths["plot"].write_bytes(png)
        self.files = {k: str(v) for k, v in paths.items()}
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        paths["markdown"].write_text(self.markdown(PLOT_FILE if png else None))
        paths["html"].write_text(self.html(png))
        return paths


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} GiB"


def _num(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def plot_png(report: Report) -> bytes | None:
    """A PNG of the metric against median latency at each batch size (None without
    matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        report.notes.append("plot skipped: matplotlib is not installed (modelport[optimize])")
        return None
    import io

    batches = report.batch_sizes
    # Points carry short tags; the legend below the panels says what each one is.
    tags = {
        v.label: "P" if i == 0 else (v.label if len(v.label) <= 4 else str(i))
        for i, v in enumerate(report.versions)
    }
    rows = len(report.versions)
    fig, axes = plt.subplots(
        1, len(batches), figsize=(5.5 * len(batches), 4.2 + 0.17 * rows), squeeze=False
    )
    for ax, b in zip(axes[0], batches, strict=True):
        for v in report.versions:
            ms = v.latency_ms(b)
            if ms is None:
                continue
            parent = v is report.parent_entry
            color = "black" if parent else ("tab:green" if v.passed_gate else "tab:red")
            marker = "*" if v.label == report.chosen else ("s" if parent else "o")
            what = "original" if parent else ", ".join(v.passes) or v.label
            ax.scatter(
                [ms],
                [v.metric],
                c=color,
                marker=marker,
                s=120 if marker == "*" else 40,
                label=f"{tags[v.label]}: {what}" if b == batches[0] else None,
            )
            ax.annotate(
                tags[v.label], (ms, v.metric), fontsize=8, xytext=(4, 3), textcoords="offset points"
            )
        front = [e for lbl in report.pareto if (e := report.entry(lbl)) and e.latency_ms(b)]
        if len(front) > 1 and b == batches[-1]:  # the front is judged at the largest batch
            pts = sorted((e.latency_ms(b) or 0.0, e.metric) for e in front)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "--", c="tab:blue", lw=1)
        times = [ms for v in report.versions if (ms := v.latency_ms(b))]
        wide = bool(times) and max(times) > 10 * min(times)
        if wide:
            ax.set_xscale("log")
        ax.set_xlabel(f"median latency at batch {b} (ms{', log scale' if wide else ''})")
        ax.set_ylabel(report.metric.name)
        ax.grid(True, alpha=0.3)
    fig.legend(loc="lower center", fontsize=7, ncol=2, frameon=False)
    fig.subplots_adjust(bottom=0.12 + 0.035 * ((rows + 1) // 2), top=0.9, wspace=0.25)
    fig.suptitle(
        f"{report.parent}: {report.metric.name} vs latency "
        "(green passes the gate, red fails, ★ registered, dashed: Pareto front)"
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
