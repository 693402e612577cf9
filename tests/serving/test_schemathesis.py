"""schemathesis over the whole OpenAPI document, with every one of its checks: no 5xx, every
response as documented, invalid requests refused, and valid requests accepted."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi

from slipway.app import create_app
from slipway.config import Settings
from slipway.keys import KeyStore
from slipway.registry import Registry
from slipway.testing import register_reference_model, transactions

# 413 is how this API refuses a body over its limits (bytes or rows), schema-violating or not.
# The generic operations take the body of the model named in the path (or by ?model=), which
# OpenAPI cannot tie to a parameter: a generated body may fit another served model and be
# refused with 422. Each served model's own operation (predict_fraud, v2_infer_fraud, ...)
# has the exact schema and gets the full positive check; /invocations with one model served
# gets it in the second test.
CONFIG = SchemathesisConfig.from_str(
    """
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 409, 413, 415, 422, 429]

[[operations]]
include-operation-id = ["predict", "v2_infer", "v2_version_infer", "invocations",
                        "post_events"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422",
                                                     "429"]

# Whether an experiment can start depends on the registry, not on the body's shape: the metric
# must fit the model's task, --unit-field must be a field of its contract, an outcome metric
# needs outcomes seen before, and an A/B test needs a split: a well-formed start may be a 422.
[[operations]]
include-operation-id = ["start_experiment"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422",
                                                     "429"]
"""
)
schemathesis.checks.load_all_checks()
CHECKS = schemathesis.checks.CHECKS.get_all()


def fit_correlations(case: Any) -> Any:
    """Make a generated valid body satisfy the constraints JSON Schema cannot state (each said
    in the schema's descriptions): one unit id per instance; one row count for every V2 tensor,
    which its shape states; MLflow columns of one length."""
    body = case.body
    if not isinstance(body, dict) or case.meta is None:
        return case
    if not case.meta.generation.mode.is_positive:
        return case
    if isinstance(body.get("unit_ids"), list):
        n = len(body["instances"]) if "instances" in body else 1
        ids = body["unit_ids"] or [None]
        body["unit_ids"] = [ids[i % len(ids)] for i in range(n)]
    inputs = body.get("inputs")
    if isinstance(inputs, list) and inputs and all(isinstance(t, dict) for t in inputs):
        n = min(len(t.get("data", [])) for t in inputs)
        for t in inputs:
            if isinstance(t.get("shape"), list) and t["shape"] and n:
                t["data"] = t["data"][:n]
                t["shape"][0] = n
    if isinstance(inputs, dict) and inputs and all(isinstance(v, list) for v in inputs.values()):
        n = min(len(v) for v in inputs.values())
        body["inputs"] = {k: v[:n] for k, v in inputs.items()}
    return case


def _fuzz(loaded: Any, headers: dict[str, str], only: set[str] | None = None) -> dict[str, Any]:
    failures: dict[str, Any] = {}
    operations = [result.ok() for result in loaded.get_all_operations()]
    if only is not None:
        operations = [op for op in operations if op.label in only]
    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def fuzz(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            fuzz()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE  # nothing to get wrong in a bare GET
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises a FailureGroup
            failures[f"{operation.label} ({mode})"] = exc
    return failures


def _load(app: Any, headers: dict[str, str]) -> Any:
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG, headers=headers)
    loaded.hook("map_case")(lambda ctx, case: fit_correlations(case))
    return loaded


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The service over three models (classifier, regressor, array model), its schema and a key."""
    import numpy as np
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline

    s = Settings(home=tmp_path_factory.mktemp("fuzz"), user="t", serve_rate_limit=0)
    registry = Registry(s)
    X, y = transactions(400)
    register_reference_model(registry, unseen="reject")  # its schema lists the categories
    num = X[["amount", "hour"]]
    registry.register(make_pipeline(LinearRegression()).fit(num, y), "prices", num, y,
                      alias="production")  # fmt: skip
    grid = np.random.default_rng(0).normal(size=(300, 3))
    registry.register(make_pipeline(LogisticRegression()).fit(grid, grid[:, 0] > 0), "grid",
                      grid, grid[:, 0] > 0, alias="production")  # fmt: skip
    token = KeyStore(registry.store).create("fuzz", "admin")[1]
    from slipway.features.ingest import ingest

    events = X.assign(card_id="c1", ts="2026-01-01T00:00:00Z", event_id=[str(i) for i in X.index])
    ingest(registry.store, events, "transactions", entity="card_id", timestamp="ts", id="event_id")
    app = create_app(s, registry=registry)  # slipway.app's: POST /v1/events included
    headers = {"Authorization": f"Bearer {token}"}
    yield _load(app, headers), headers, registry
    asgi.shutdown_lifespans()  # stops the writer and watcher threads the lifespan started
    registry.store.dispose()


def test_whole_api_conforms_to_its_documentation(api):
    """Generated requests (valid and invalid) pass every schemathesis check on every route."""
    loaded, headers, _ = api
    assert len(list(loaded.get_all_operations())) >= 25
    failures = _fuzz(loaded, headers)
    assert not failures, "\n\n".join(f"{op}: {str(exc)[:1500]}" for op, exc in failures.items())


def test_invocations_with_one_model_served_accept_every_valid_body(api, tmp_path):
    """With one model served, /invocations documents its exact body: valid ones are 2xx."""
    _, _, registry = api
    s = registry.settings.model_copy(update={"serve_models": ("fraud",)})
    app = create_app(s, registry=registry)
    token = KeyStore(registry.store).create("fuzz-one", "predict")[1]
    headers = {"Authorization": f"Bearer {token}"}
    failures = _fuzz(_load(app, headers), headers, only={"POST /invocations"})
    assert not failures, "\n\n".join(f"{op}: {str(exc)[:1500]}" for op, exc in failures.items())


def test_fraud_schema_refuses_what_its_contract_refuses(api):
    """Positional rows are typed field by field; unit_id and unit_ids exclude each other."""
    import jsonschema_rs

    loaded, _, _ = api
    doc = loaded.raw_schema
    schema = doc["paths"]["/v1/models/fraud/predict"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    validator = jsonschema_rs.Draft202012Validator(schema)
    row = {"amount": 12.5, "hour": 3, "merchant": "travel", "country": "US"}
    assert validator.is_valid({"features": list(row.values())})
    assert validator.is_valid({"instances": [row], "unit_ids": ["u1"]})
    assert not validator.is_valid({"features": []})
    assert not validator.is_valid({"features": [None, None, None, None]})
    assert not validator.is_valid({"features": [12.5, 3, "casino", "US"]})
    assert not validator.is_valid({"instances": [row], "unit_id": None, "unit_ids": ["u1"]})
    assert not validator.is_valid({"instances": [{**row, "merchant": "casino"}]})
