"""Reports: strict JSON, a rich terminal rendering, and one well-formed offline HTML page."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import numpy as np
import pandas as pd
from rich.console import Console

from slipway.monitoring import DriftReport, monitor
from slipway.monitoring.runner import Monitor
from slipway.testing import transactions
from tests.monitoring.helpers import NOW


def drifted():
    """A report with a flagged number, a flagged category and an OK feature."""
    rng = np.random.default_rng(0)
    ref = pd.DataFrame(
        {
            "x": rng.normal(size=3_000),
            "c": rng.choice(list("abc"), 3_000),
            "z": rng.normal(size=3_000),
        }
    )
    cur = pd.DataFrame(
        {"x": rng.normal(1, 1, 800), "c": rng.choice(list("abd"), 800), "z": rng.normal(size=800)}
    )
    return monitor(ref, cur)


def parse_page(html: str) -> ET.Element:
    """Parse the page as XML: proves every tag is closed and every text escaped."""
    return ET.fromstring(re.sub(r"^<!DOCTYPE html>", "", html).strip())


def test_html_is_one_offline_page_with_distributions_of_flagged_features():
    """No script, no link, no URL; an SVG per flagged feature; it parses as XML."""
    report = drifted()
    page = report.to_html()
    root = parse_page(page)
    assert (
        "<script" not in page and "<link" not in page and "http" not in page and "src=" not in page
    )
    figures = [f for f in root.iter("figure") if f.find("figcaption") is not None]
    captions = [f.find("figcaption").text for f in figures]
    assert any(c.startswith("x vs reference") for c in captions)
    assert any(c.startswith("c vs reference") for c in captions)
    assert not any(c.startswith("z vs") for c in captions)
    assert len(list(root.iter("svg"))) >= 2


def test_html_escapes_feature_names():
    """A feature called <script> is text, not markup."""
    rng = np.random.default_rng(1)
    report = monitor(
        pd.DataFrame({"<script>": rng.normal(size=500)}),
        pd.DataFrame({"<script>": rng.normal(3, 1, 300)}),
    )
    page = report.to_html()
    parse_page(page)
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_html_over_time_from_windows_and_earlier_runs(registry, fraud, log):
    """A stored run's page plots statistics and performance for every window."""
    X, y = transactions(900, seed=31)
    ids, _ = log.predictions("fraud", X, NOW - timedelta(days=3), spread=timedelta(days=3))
    log.feedback(ids, y, NOW)
    report = Monitor(registry, clock=lambda: NOW, sinks=[]).run(
        "fraud", since=timedelta(days=3), window=timedelta(days=1)
    )
    root = parse_page(report.to_html())
    captions = [f.find("figcaption").text for f in root.iter("figure")]
    assert "Mean shift (reference SD)" in captions and "Jensen-Shannon distance" in captions
    assert any(c.startswith("roc_auc with its 95% interval") for c in captions)
    assert "Null rate per feature" in captions
    points = [c for c in root.iter("circle")]
    assert len(points) >= 3


def test_terminal_rendering_names_every_feature_and_the_reasons():
    """rich prints the verdict, the reasons and a row per feature."""
    console = Console(record=True, width=140)
    console.print(drifted())
    text = console.export_text()
    assert "ALERT" in text and "x: shifted" in text
    for name in ("x", "c", "z"):
        assert re.search(rf"│ {name}\s", text)


def test_json_round_trip_keeps_the_verdict():
    """from_dict(to_dict()) gives the same status, reasons and per-feature results."""
    report = drifted()
    again = DriftReport.from_dict(report.to_dict())
    assert again.status == report.status and again.reasons == report.reasons
    assert again.features["x"].effects == report.features["x"].effects


def test_terminal_contract_violations_line_ends_cleanly():
    """No refusal reads "no request refused" (never "; -"); refusals list their codes."""

    def text(report: DriftReport) -> str:
        console = Console(record=True, width=200)
        console.print(report)
        return console.export_text()

    report = drifted()
    report.latest.quality["violations"] = {"requests": 0, "rows": 0, "rate": 0.0, "codes": {}}
    shown = text(report)
    assert "Contract violations: no request refused" in shown and "; -" not in shown
    report.latest.quality["violations"] = {
        "requests": 2,
        "rows": 3,
        "rate": 0.01,
        "codes": {"unseen_category": 2},
    }
    assert "Contract violations: 2 request(s), 3 row(s) refused (1.00%); unseen_category 2" in text(
        report
    )
