"""Monitoring: data, prediction and concept drift that stay honest at any sample size.

``monitor(reference, current)`` checks two frames or arrays; :class:`Monitor` checks a
registered model's prediction log window by window and stores every run.
"""

from __future__ import annotations

from slipway.monitoring.checks import monitor
from slipway.monitoring.drift import FeatureResult, Statistic
from slipway.monitoring.policy import Policy, QualityFloors, Thresholds, load_policy
from slipway.monitoring.report import DriftReport, Reason, WindowReport

__all__ = [
    "DriftReport",
    "FeatureResult",
    "Policy",
    "QualityFloors",
    "Reason",
    "Statistic",
    "Thresholds",
    "WindowReport",
    "load_policy",
    "monitor",
]
