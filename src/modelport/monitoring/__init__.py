"""Monitoring: Prometheus metrics, payload log, drift, live accuracy and alerts.

The server builds one :class:`Monitor` and binds a :class:`VersionMonitor` per loaded
version; the pieces are usable on their own (``drift`` and ``feedback`` need only
numpy and scipy). Names are imported lazily, so importing one submodule does not pull
in ``prometheus_client``.

Example:
    >>> from modelport.monitoring import build_profile, psi
    >>> round(psi([0.5, 0.5], [0.6, 0.4]), 4)
    0.0405
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AlertRules": "config",
    "MonitoringConfig": "config",
    "ServingMetrics": "metrics",
    "RequestMetrics": "metrics",
    "VersionMetrics": "metrics",
    "LATENCY_BUCKETS_S": "metrics",
    "DriftProfile": "drift",
    "DriftReport": "drift",
    "DriftThresholds": "drift",
    "build_profile": "drift",
    "compare": "drift",
    "extract_features": "drift",
    "psi": "drift",
    "DriftWindow": "window",
    "FeedbackStore": "feedback",
    "classification_metrics": "feedback",
    "regression_metrics": "feedback",
    "JsonlSink": "payload_log",
    "PayloadLogger": "payload_log",
    "PayloadSink": "payload_log",
    "ProfileStore": "profiles",
    "TaskInfo": "task",
    "resolve_task": "task",
    "Alert": "alerts",
    "AlertTracker": "alerts",
    "Snapshot": "alerts",
    "evaluate": "alerts",
    "Monitor": "monitor",
    "VersionMonitor": "monitor",
}

__all__ = [
    "LATENCY_BUCKETS_S",
    "Alert",
    "AlertRules",
    "AlertTracker",
    "DriftProfile",
    "DriftReport",
    "DriftThresholds",
    "DriftWindow",
    "FeedbackStore",
    "JsonlSink",
    "Monitor",
    "MonitoringConfig",
    "PayloadLogger",
    "PayloadSink",
    "ProfileStore",
    "RequestMetrics",
    "ServingMetrics",
    "Snapshot",
    "TaskInfo",
    "VersionMetrics",
    "VersionMonitor",
    "build_profile",
    "classification_metrics",
    "compare",
    "evaluate",
    "extract_features",
    "psi",
    "regression_metrics",
    "resolve_task",
]

if TYPE_CHECKING:
    from modelport.monitoring.alerts import Alert, AlertTracker, Snapshot, evaluate
    from modelport.monitoring.config import AlertRules, MonitoringConfig
    from modelport.monitoring.drift import (
        DriftProfile,
        DriftReport,
        DriftThresholds,
        build_profile,
        compare,
        extract_features,
        psi,
    )
    from modelport.monitoring.feedback import (
        FeedbackStore,
        classification_metrics,
        regression_metrics,
    )
    from modelport.monitoring.metrics import (
        LATENCY_BUCKETS_S,
        RequestMetrics,
        ServingMetrics,
        VersionMetrics,
    )
    from modelport.monitoring.monitor import Monitor, VersionMonitor
    from modelport.monitoring.payload_log import JsonlSink, PayloadLogger, PayloadSink
    from modelport.monitoring.profiles import ProfileStore
    from modelport.monitoring.task import TaskInfo, resolve_task
    from modelport.monitoring.window import DriftWindow


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'modelport.monitoring' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"modelport.monitoring.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
