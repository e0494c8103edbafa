"""A self-contained HTML drift report: a summary table and one plot per feature.

Plots are drawn with matplotlib (Agg backend, no display needed) and embedded as PNG
data URIs, so the report is one file to attach to a ticket or open offline. Numeric
features show the reference and served distributions as overlaid histograms;
categorical features show category shares side by side.

Example:
    >>> import numpy as np
    >>> from modelport.monitoring.drift import build_profile, compare, extract_features
    >>> rng = np.random.default_rng(0)
    >>> profile = build_profile("m", "1", {"X": rng.normal(size=(500, 2))})
    >>> served = extract_features({"X": rng.normal(0.5, 1, size=(300, 2))})
    >>> html = render_html(profile, compare(profile, served, None), served, None)
    >>> html.count("<img"), "X[1]" in html
    (2, True)
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelport.core.errors import MissingDependency
from modelport.monitoring.drift import (
    OTHER,
    DriftProfile,
    DriftReport,
    FeatureDrift,
    FeatureProfile,
    as_categories,
    numeric,
)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the installed extras
        raise MissingDependency.for_extra("matplotlib", "monitor", "HTML drift reports") from e
    return plt


def _plot(fp: FeatureProfile, values: np.ndarray, result: FeatureDrift) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 2.8), dpi=90)
    try:
        if fp.kind == "numeric":
            ref = np.asarray(fp.quantiles)
            cur = numeric(values)
            both = np.concatenate([ref, cur]) if cur.size else ref
            bins = np.histogram_bin_edges(both, bins=30)
            ax.hist(ref, bins=bins, density=True, alpha=0.5, label="reference")
            if cur.size:
                ax.hist(cur, bins=bins, density=True, alpha=0.5, label="served")
        else:
            cats = as_categories(values)
            shown = [c for c in fp.categories if c != OTHER][:20]
            served = [float(np.mean(cats == c)) if cats.size else 0.0 for c in shown]
            ref_shares = [fp.fractions[fp.categories.index(c)] for c in shown]
            x = np.arange(len(shown))
            ax.bar(x - 0.2, ref_shares, 0.4, label="reference")
            ax.bar(x + 0.2, served, 0.4, label="served")
            ax.set_xticks(x, shown, rotation=45, ha="right", fontsize=7)
        psi = "n/a" if result.psi is None else f"{result.psi:.3f}"
        ax.set_title(f"{fp.name}  (PSI {psi})", color="#b00020" if result.drifted else "black")
        ax.legend(fontsize=7)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"


def render_html(
    profile: DriftProfile,
    report: DriftReport,
    columns: Mapping[str, np.ndarray],
    predictions: np.ndarray | None,
) -> str:
    """The report page for ``report`` (from :func:`~modelport.monitoring.drift.compare`)."""
    profiles = {f.name: f for f in profile.features}
    rows, plots = [], []
    results = list(report.features)
    if report.prediction is not None and profile.prediction is not None:
        profiles["prediction"] = profile.prediction
        results.append(report.prediction)
    for r in results:
        mark = "drifted" if r.drifted else "ok"
        rows.append(
            f"<tr class='{mark}'><td>{html.escape(r.name)}</td><td>{r.kind}</td>"
            f"<td>{r.count}</td><td>{_num(r.psi)}</td><td>{_num(r.ks_pvalue)}</td>"
            f"<td>{_num(r.chi2_pvalue)}</td><td>{mark}</td></tr>"
        )
        values = predictions if r.name == "prediction" and predictions is not None else None
        if values is None:
            values = columns.get(r.name)
        if values is not None:
            png = _plot(profiles[r.name], np.asarray(values), r)
            alt = html.escape(r.name)
            plots.append(f"<figure><img alt='{alt}' src='data:image/png;base64,{png}'></figure>")
    verdict = "DRIFT DETECTED" if report.drifted else "no drift"
    title = f"Drift report — {html.escape(report.model)}:{html.escape(report.version)}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: 4px 10px; border-bottom: 1px solid #ddd; }}
tr.drifted td {{ color: #b00020; font-weight: 600; }}
figure {{ display: inline-block; margin: 6px; }}
</style></head><body>
<h1>{title}</h1>
<p><b>{verdict}</b> — {report.window} served rows against {profile.rows} reference rows
(profile of {html.escape(profile.model)}:{html.escape(profile.version)},
{html.escape(profile.created_at)}).
PSI threshold {report.thresholds.psi}; KS alpha {report.thresholds.ks_alpha or "not used"}.</p>
<table><tr><th>feature</th><th>kind</th><th>rows</th><th>PSI</th><th>KS p-value</th>
<th>χ² p-value</th><th>verdict</th></tr>
{"".join(rows)}
</table>
<h2>Distributions</h2>
{"".join(plots)}
</body></html>
"""
