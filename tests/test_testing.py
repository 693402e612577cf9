"""slipway.testing: the fixtures users opt into work as documented."""

from __future__ import annotations

import slipway
from slipway.testing import fit_reference_model, register_reference_model, served


def test_registry_fixture_is_private_and_the_env_fixture_points_the_api_at_it(
    slipway_env, slipway_model
):
    """slipway.register through the environment lands in the temporary registry."""
    mv = slipway.register(slipway_model.pipeline, "mine", slipway_model.X_train)
    assert slipway_env.get("mine").sha256 == mv.sha256
    assert str(slipway_env.settings.home).startswith(str(slipway_env.settings.home.parent))


def test_service_fixture_answers_predictions_with_its_key(slipway_service, slipway_model):
    """The served fixture predicts with its key, refuses without one, and logs what it answers."""
    rows = slipway_model.X_val.iloc[:2].to_dict("records")
    answer = slipway_service.predict("fraud", rows)
    assert answer.status_code == 200 and answer.json()["version"] == 1
    labels = [p["label"] for p in answer.json()["predictions"]]
    assert labels == slipway_model.pipeline.predict(slipway_model.X_val.iloc[:2]).tolist()
    anonymous = slipway_service.client.post("/v1/models/fraud/predict", json={"instances": rows})
    assert anonymous.status_code == 401
    batch = slipway_service.client.get(
        "/v1/models/fraud/predictions/k1", headers=slipway_service.headers
    )
    assert batch.status_code == 404  # the full app: batch's route is there, with no run yet


def test_the_helpers_work_without_pytest_fixtures(tmp_path):
    """temporary_registry-free use: register the reference model and serve it by hand."""
    from slipway.testing import temporary_registry

    registry = temporary_registry(tmp_path / "home")
    fitted = fit_reference_model(n=400, seed=3)
    mv = register_reference_model(registry, fitted, "other")
    assert mv.metrics and registry.get("other@production").version == 1
    with served(registry) as service:
        assert service.client.get("/ready").json()["models"] == {"other": 1}
    registry.store.dispose()
