"""Monitoring settings: sampling, windows, thresholds — globally and per model.

The server reads them from the ``monitoring:`` section of its configuration file;
every field has a default, so monitoring works with no configuration at all.

Example::

    monitoring:
      payload_sample_rate: 0.01        # 1 % of requests go to the payload log
      drift_window: 2000               # rows of recent inputs kept per version
      alerts:
        drift_psi: 0.2                 # any feature's PSI at or above this
        error_rate: 0.05               # share of 5xx answers over alert_window_s
      models:
        fraud:
          payload_sample_rate: 0.1
          alerts: {accuracy_floor: 0.9, p99_latency_s: 0.05}

>>> cfg = MonitoringConfig.model_validate(
...     {"models": {"fraud": {"alerts": {"accuracy_floor": 0.9}}}})
>>> cfg.alerts_for("fraud").accuracy_floor, cfg.alerts_for("fraud").error_rate
(0.9, 0.05)
>>> cfg.sample_rate("fraud"), cfg.sample_rate("iris")
(0.01, 0.01)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AlertRules(BaseModel):
    """Thresholds that raise ``modelport_alert_active``; ``None`` switches a rule off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    drift_psi: float | None = Field(
        default=0.2, gt=0, description="Alert when a feature's PSI reaches this."
    )
    accuracy_floor: float | None = Field(
        default=None, ge=0, le=1, description="Alert when live accuracy falls below this."
    )
    p99_latency_s: float | None = Field(
        default=None, gt=0, description="Alert when the p99 end-to-end latency exceeds this."
    )
    error_rate: float | None = Field(
        default=0.05, ge=0, le=1, description="Alert when the share of 5xx answers exceeds this."
    )
    min_requests: int = Field(
        default=20, ge=1, description="Latency and error rules need this many requests."
    )
    min_feedback: int = Field(
        default=30, ge=1, description="The accuracy rule needs this many labelled rows."
    )


class ModelMonitoring(BaseModel):
    """Per-model overrides; unset fields fall back to the global value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    payload_sample_rate: float | None = Field(default=None, ge=0, le=1)
    alerts: AlertRules | None = Field(
        default=None, description="Only the rules named here replace the global ones."
    )


class MonitoringConfig(BaseModel):
    """Everything monitoring needs, with defaults that cost little on the request path."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    payload_sample_rate: float = Field(
        default=0.01, ge=0, le=1, description="Share of requests written to the payload log."
    )
    payload_queue_size: int = Field(default=1024, ge=1)
    payload_max_bytes: int = Field(default=64 << 20, ge=4096, description="Rotate past this.")
    payload_backups: int = Field(default=5, ge=0, description="Rotated files kept.")
    payload_max_elements: int = Field(
        default=4096, ge=1, description="Tensors with more elements are logged truncated."
    )
    drift_window: int = Field(default=1000, ge=10, description="Recent rows kept per version.")
    drift_psi_threshold: float = Field(default=0.2, gt=0)
    drift_ks_alpha: float | None = Field(
        default=None, gt=0, lt=1, description="Also flag features whose KS p-value is below."
    )
    drift_min_rows: int = Field(default=100, ge=1, description="Rows needed before flagging.")
    feedback_max_predictions: int = Field(default=100_000, ge=1)
    feedback_ttl_s: float = Field(
        default=3600.0, gt=0, description="How long predictions wait for their label."
    )
    feedback_window: int = Field(
        default=1000, ge=1, description="Labelled requests the rolling metrics cover."
    )
    evaluation_interval_s: float = Field(
        default=15.0, gt=0, description="How often drift, accuracy and alerts are evaluated."
    )
    alert_window_s: float = Field(
        default=300.0, gt=0, description="Span of the latency and error-rate rules."
    )
    alerts: AlertRules = Field(default_factory=AlertRules)
    models: dict[str, ModelMonitoring] = Field(default_factory=dict)

    def sample_rate(self, model: str) -> float:
        """The payload-log sampling rate of ``model``."""
        m = self.models.get(model)
        if m is not None and m.payload_sample_rate is not None:
            return m.payload_sample_rate
        return self.payload_sample_rate

    def alerts_for(self, model: str) -> AlertRules:
        """The alert rules of ``model``: its overrides on top of the global rules."""
        m = self.models.get(model)
        if m is None or m.alerts is None:
            return self.alerts
        own = m.alerts.model_dump(include=m.alerts.model_fields_set)
        return AlertRules.model_validate({**self.alerts.model_dump(), **own})
