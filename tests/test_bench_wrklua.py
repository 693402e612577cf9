"""The benches' wrk script: closed loop by default, paced to a total rate on request."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bench.wrklua import wrk_body_script


def test_paced_script_spreads_the_total_rate_over_wrk_threads():
    """Each wrk thread sends one request per threads/rate seconds, so the total is the rate."""
    path = Path(wrk_body_script(['{"instances": []}'], "tok", rate=400, threads=2))
    try:
        text = path.read_text()
    finally:
        path.unlink()
    interval = float(re.search(r"^interval = ([\d.]+)$", text, re.M)[1])  # type: ignore[index]
    assert interval == pytest.approx(5.0)  # 2 threads x 1000 ms / 400 per second
    assert "delay = function()" in text and 'Bearer tok"' in text


def test_closed_loop_script_has_no_delay_and_a_bad_rate_is_refused():
    """Without a rate nothing is held back; a rate of 0 or less is an error naming it."""
    path = Path(wrk_body_script(['{"instances": []}'], "tok"))
    try:
        assert "delay" not in path.read_text()
    finally:
        path.unlink()
    with pytest.raises(ValueError, match="above 0 requests/s, not 0"):
        wrk_body_script(["{}"], "tok", rate=0)
