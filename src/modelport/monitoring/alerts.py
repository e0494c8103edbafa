"""Alerts: thresholds per model turned into ``modelport_alert_active`` and log lines.

:func:`evaluate` is a pure function from a :class:`Snapshot` of one served version
(requests and errors over the alert window, p99 latency, drift, live accuracy) and the
model's :class:`~modelport.monitoring.config.AlertRules` to the state of each rule.
:class:`AlertTracker` keeps the state across evaluations: a model's alert is active
while any of its versions violates the rule; every change of state is logged once
(``WARNING`` when it fires, ``INFO`` when it resolves) and sets the gauge.

Rules (``None`` switches one off):

============  ================================================  ========================
alert         fires when                                         needs
============  ================================================  ========================
drift         a feature's PSI ≥ ``drift_psi``                    ``drift_min_rows`` rows
accuracy      live accuracy < ``accuracy_floor``                 ``min_feedback`` labels
latency_p99   p99 end-to-end latency > ``p99_latency_s``         ``min_requests``
error_rate    5xx answers / answers > ``error_rate``             ``min_requests``
============  ================================================  ========================

Example:
    >>> from modelport.monitoring.config import AlertRules
    >>> snap = Snapshot("iris", "3", requests=200, errors=30, p99_latency_s=0.004)
    >>> [(a.name, a.active) for a in evaluate(snap, AlertRules())]
    [('drift', False), ('error_rate', True)]
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from modelport.monitoring.config import AlertRules
from modelport.monitoring.metrics import ServingMetrics

log = logging.getLogger("modelport.monitoring")

ALERTS = ("drift", "accuracy", "latency_p99", "error_rate")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the rules look at for one (model, version), over the alert window."""

    model: str
    version: str
    requests: int = 0
    errors: int = 0
    p99_latency_s: float | None = None
    max_psi: float | None = None
    drifted_features: tuple[str, ...] = ()
    drift_ready: bool = False  # the drift window holds enough rows to judge
    accuracy: float | None = None
    feedback_rows: int = 0


@dataclass(frozen=True, slots=True)
class Alert:
    """The state of one rule for one version."""

    model: str
    version: str
    name: str
    active: bool
    value: float | None
    threshold: float
    message: str


def evaluate(snapshot: Snapshot, rules: AlertRules) -> list[Alert]:
    """The state of every enabled rule (see the module docs); no I/O, no state."""
    s, out = snapshot, []

    def add(name: str, active: bool, value: float | None, threshold: float, what: str) -> None:
        out.append(Alert(s.model, s.version, name, active, value, threshold, what))

    if rules.drift_psi is not None:
        psi = s.max_psi if s.drift_ready else None
        active = psi is not None and psi >= rules.drift_psi
        shown = ", ".join(s.drifted_features[:5]) or "none"
        add("drift", active, psi, rules.drift_psi, f"max PSI {_fmt(psi)} (drifted: {shown})")
    if rules.accuracy_floor is not None:
        acc = s.accuracy if s.feedback_rows >= rules.min_feedback else None
        active = acc is not None and acc < rules.accuracy_floor
        add(
            "accuracy",
            active,
            acc,
            rules.accuracy_floor,
            f"accuracy {_fmt(acc)} over {s.feedback_rows} labelled rows",
        )
    enough = s.requests >= rules.min_requests
    if rules.p99_latency_s is not None:
        p99 = s.p99_latency_s if enough else None
        active = p99 is not None and p99 > rules.p99_latency_s
        add("latency_p99", active, p99, rules.p99_latency_s, f"p99 latency {_fmt(p99)} s")
    if rules.error_rate is not None:
        rate = s.errors / s.requests if enough else None
        active = rate is not None and rate > rules.error_rate
        add(
            "error_rate",
            active,
            rate,
            rules.error_rate,
            f"error rate {_fmt(rate)} ({s.errors} of {s.requests} requests)",
        )
    return out


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


class AlertTracker:
    """Remembers which alerts fire, sets ``modelport_alert_active`` and logs changes.

    Example:
        >>> t = AlertTracker()
        >>> a = Alert("iris", "3", "error_rate", True, 0.2, 0.05, "error rate 0.2")
        >>> [(c.name, c.active) for c in t.update("iris", [a])]
        [('error_rate', True)]
        >>> t.update("iris", [a])       # no change, nothing reported
        []
        >>> t.active()
        {('iris', 'error_rate'): ['3']}
    """

    def __init__(self, metrics: ServingMetrics | None = None) -> None:
        self._metrics = metrics
        self._firing: dict[tuple[str, str], list[str]] = {}
        self._known: set[tuple[str, str]] = set()

    def update(self, model: str, alerts: Iterable[Alert]) -> list[Alert]:
        """Apply one evaluation of ``model`` (all its versions); returns the changes."""
        by_name: dict[str, list[Alert]] = {}
        for a in alerts:
            by_name.setdefault(a.name, []).append(a)
        changes = []
        for name, states in by_name.items():
            key = (model, name)
            firing = sorted((a.version for a in states if a.active), key=_vkey)
            before = self._firing.get(key, [])
            if key not in self._known and self._metrics is not None:
                self._metrics.set_alert(model, name, False)
            self._known.add(key)
            if bool(firing) != bool(before):
                if firing:
                    a = next(x for x in states if x.active)
                    log.warning(
                        "alert %s FIRING for %s (version %s): %s; threshold %s",
                        name,
                        model,
                        ",".join(firing),
                        a.message,
                        a.threshold,
                    )
                else:
                    a = states[0]
                    log.info("alert %s resolved for %s: %s", name, model, a.message)
                changes.append(a)
                if self._metrics is not None:
                    self._metrics.set_alert(model, name, bool(firing))
            if firing:
                self._firing[key] = firing
            else:
                self._firing.pop(key, None)
        return changes

    def active(self) -> dict[tuple[str, str], list[str]]:
        """Firing alerts: ``{(model, alert): [versions]}``."""
        return {k: list(v) for k, v in self._firing.items()}


def _vkey(v: str) -> tuple[int, str]:
    return (int(v), "") if v.isdigit() else (1 << 62, v)
