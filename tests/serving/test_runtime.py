"""Hot reload: alias moves are followed, swaps are atomic, bad versions never serve."""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest

from slipway.exceptions import ModelNotFound
from slipway.serving.runtime import Runtime


def wait_for(condition, timeout=10.0):
    """Poll until ``condition()`` is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def second_version(h, register, promote=True):
    """Register a differently trained fraud model as version 2 (promoted unless told not to)."""
    fitted = register(h.registry, "fraud", seed=1)
    if not promote:
        h.registry.promote("fraud", 1)
    return fitted


def corrupt(h, version):
    """Overwrite a version's model artifact with other bytes."""
    path = h.registry.artifacts.path(h.registry.get(f"fraud:{version}").sha256)
    os.chmod(path, 0o644)
    path.write_bytes(b"not a model")


def test_watcher_follows_a_promotion_within_a_poll(harness, register):
    """The background thread swaps to the promoted version; answers name it."""
    second_version(harness, register)
    assert wait_for(lambda: harness.service.runtime.get("fraud").version == 2)
    r = harness.post("/v1/models/fraud/predict", {"instances": harness.rows("fraud", 1)})
    assert r.json()["version"] == 2
    frame = pd.DataFrame(harness.rows("fraud", 1))
    expected = harness.registry.load("fraud:2", backend="auto").predict_proba(frame)[0]
    assert r.json()["predictions"][0]["probabilities"]["1"] == pytest.approx(expected[1], 1e-12)


def test_rollback_is_followed_too(harness, register):
    """`models rollback` moves the alias back and the worker follows."""
    second_version(harness, register)
    assert wait_for(lambda: harness.service.runtime.get("fraud").version == 2)
    harness.registry.rollback("fraud")
    assert wait_for(lambda: harness.service.runtime.get("fraud").version == 1)


def test_a_corrupted_version_never_replaces_the_serving_one(serve, register):
    """Verification fails -> the old version serves, /ready warns, reload says why (409)."""
    h = serve(serve_poll_seconds=3600)  # only explicit checks in this test
    second_version(h, register, promote=False)
    corrupt(h, 2)
    h.registry.promote("fraud", 2)
    h.service.runtime.check()
    assert h.service.runtime.get("fraud").version == 1
    r = h.post("/v1/models/fraud/reload", role="admin")
    assert r.status_code == 409
    assert "fraud:2" in r.json()["error"] and "still serving fraud:1" in r.json()["error"]
    ready = h.client.get("/ready").json()
    assert ready["models"] == {"fraud": 1} and "version 2 failed" in ready["warnings"][0]
    assert h.post("/v1/models/fraud/predict", {"instances": h.rows("fraud")}).json()["version"] == 1
    text = h.get("/metrics").text
    assert 'slipway_model_loads_total{model="fraud",outcome="failed",version="2"}' in text


def test_failed_versions_are_retried_with_backoff(serve, register):
    """A failed version is not reloaded on every poll, only after its backoff."""
    h = serve(serve_poll_seconds=3600)
    second_version(h, register, promote=False)
    corrupt(h, 2)
    h.registry.promote("fraud", 2)
    runtime = h.service.runtime
    runtime.check()
    runtime.check()
    assert runtime.failures["fraud"].attempts == 1
    runtime.failures["fraud"].retry_at = 0  # backoff over
    runtime.check()
    assert runtime.failures["fraud"].attempts == 2


def test_reload_loads_the_moved_alias_now(serve, register):
    """POST /v1/models/{name}/reload (admin) swaps at once and reports both versions."""
    h = serve(serve_poll_seconds=3600)
    second_version(h, register)
    r = h.post("/v1/models/fraud/reload", role="admin")
    assert r.json() == {"model": "fraud", "version": 2, "previous": 1, "changed": True}
    again = h.post("/v1/models/fraud/reload", role="admin").json()
    assert again["changed"] is False


def test_models_promoted_after_start_are_served(serve, register):
    """A model that gets a production alias later is picked up by the watcher."""
    h = serve()
    register(h.registry, "prices")
    assert wait_for(lambda: "prices" in h.service.runtime.served)


def test_model_option_restricts_what_is_served(serve, register, tmp_path):
    """serve_models serves only those names, and one without an alias cannot start."""
    h = serve(models=("fraud", "prices"), serve_models=("prices",))
    assert list(h.service.runtime.served) == ["prices"]
    assert h.post("/v1/models/fraud/predict", {"features": {}}).status_code == 404
    with pytest.raises(ModelNotFound, match="no 'production' alias"):
        Runtime(h.registry, names=("ghost",)).load_all()


def test_serving_an_onnx_version_needs_onnxruntime_only(harness):
    """A worker loading an accepted ONNX graph never imports the converter (skl2onnx, onnx)."""
    import subprocess
    import sys

    mv = harness.registry.get("fraud")
    assert mv.meta.get("onnx", {}).get("accepted"), "the fixture model should have a graph"
    code = (
        "import sys\n"
        "from slipway.config import Settings\n"
        "from slipway.registry import Registry\n"
        f"registry = Registry(Settings(home={str(harness.settings.home)!r}))\n"
        "model = registry.load('fraud', backend='auto')\n"
        "print(model.backend, 'skl2onnx' in sys.modules, 'onnx' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["onnx", "False", "False"]
