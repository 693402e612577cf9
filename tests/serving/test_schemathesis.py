"""schemathesis over the whole OpenAPI document: no 5xx, every response as documented."""

from __future__ import annotations

import itertools

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
CONFIG = SchemathesisConfig.from_str(
    """
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 409, 413, 415, 422, 429]
"""
)
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.negative_data_rejection,
]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The service over three models (classifier, regressor, array model), its schema and a key."""
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    s = Settings(home=tmp_path_factory.mktemp("fuzz"), user="t", serve_rate_limit=0)
    registry = Registry(s)
    X, y = transactions(400)
    register_reference_model(registry)
    num = X[["amount", "hour"]]
    registry.register(make_pipeline(LinearRegression()).fit(num, y), "prices", num, y,
                      alias="production")  # fmt: skip
    token = KeyStore(registry.store).create("fuzz", "admin")[1]
    from slipway.features.ingest import ingest

    events = X.assign(card_id="c1", ts="2026-01-01T00:00:00Z", event_id=[str(i) for i in X.index])
    ingest(registry.store, events, "transactions", entity="card_id", timestamp="ts", id="event_id")
    app = create_app(s, registry=registry)  # slipway.app's: POST /v1/events included
    headers = {"Authorization": f"Bearer {token}"}
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG, headers=headers)
    yield loaded, headers
    asgi.shutdown_lifespans()  # stops the writer and watcher threads the lifespan started
    registry.store.dispose()


def test_whole_api_conforms_to_its_documentation(api):
    """Generated requests (valid and invalid) never cause a 5xx or an undocumented answer."""
    loaded, headers = api
    failures = {}
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) >= 20

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
        except Exception as exc:
            failures[f"{operation.label} ({mode})"] = exc
    assert not failures, "\n\n".join(f"{op}: {str(exc)[:1500]}" for op, exc in failures.items())
