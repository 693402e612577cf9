"""Monitoring: data, prediction and concept drift that stay honest at any sample size.

``monitor(reference, current)`` checks two frames or arrays; :class:`Monitor` checks a
registered model's prediction log window by window and stores every run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING

from slipway import _lazy

if _TYPE_CHECKING:
    from slipway.monitoring.checks import monitor
    from slipway.monitoring.drift import FeatureResult, Statistic
    from slipway.monitoring.policy import Policy, QualityFloors, Thresholds, load_policy
    from slipway.monitoring.report import DriftReport, Reason, WindowReport
    from slipway.monitoring.runner import Monitor, RunSummary, latest_report
    from slipway.monitoring.sinks import AlertSink, Route, WebhookSink, log_sink

# Imported on first use: the HTTP route of the latest report (``monitoring.http``) is part of
# every serving worker, which needs neither scipy nor the performance estimators.
__getattr__, __dir__ = _lazy.exports(
    __name__,
    {
        "AlertSink": "slipway.monitoring.sinks",
        "DriftReport": "slipway.monitoring.report",
        "FeatureResult": "slipway.monitoring.drift",
        "Monitor": "slipway.monitoring.runner",
        "Policy": "slipway.monitoring.policy",
        "QualityFloors": "slipway.monitoring.policy",
        "Reason": "slipway.monitoring.report",
        "Route": "slipway.monitoring.sinks",
        "RunSummary": "slipway.monitoring.runner",
        "Statistic": "slipway.monitoring.drift",
        "Thresholds": "slipway.monitoring.policy",
        "WebhookSink": "slipway.monitoring.sinks",
        "WindowReport": "slipway.monitoring.report",
        "latest_report": "slipway.monitoring.runner",
        "load_policy": "slipway.monitoring.policy",
        "log_sink": "slipway.monitoring.sinks",
        "monitor": "slipway.monitoring.checks",
    },
)

__all__ = [
    "AlertSink",
    "DriftReport",
    "FeatureResult",
    "Monitor",
    "Policy",
    "QualityFloors",
    "Reason",
    "Route",
    "RunSummary",
    "Statistic",
    "Thresholds",
    "WebhookSink",
    "WindowReport",
    "latest_report",
    "load_policy",
    "log_sink",
    "monitor",
]
