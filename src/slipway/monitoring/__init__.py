"""Monitoring: data, prediction and concept drift that stay honest at any sample size.

``monitor(reference, current)`` checks two frames or arrays; :class:`Monitor` checks a
registered model's prediction log window by window and stores every run.
"""

from __future__ import annotations

from slipway.monitoring.checks import monitor
from slipway.monitoring.drift import FeatureResult, Statistic
from slipway.monitoring.policy import Policy, QualityFloors, Thresholds, load_policy
from slipway.monitoring.report import DriftReport, Reason, WindowReport
from slipway.monitoring.runner import Monitor, RunSummary, latest_report
from slipway.monitoring.sinks import AlertSink, Route, WebhookSink, log_sink

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
