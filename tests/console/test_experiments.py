"""The console's experiments: pages with live verdicts, and the stop action (promote or
abandon) through ExperimentDesk.stop, confirmed, CSRF-checked and audited as the key via ui."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slipway.experiments import ExperimentDesk
from slipway.experiments.assignment import TREATMENT, assign
from slipway.store import experiments as book
from tests.experiments.helpers import write_traffic


def with_experiment(ui, mode="shadow", **options):
    """fraud:2 registered and tried against production's fraud:1; the experiment."""
    f = ui.fitted
    ui.registry.register(f.pipeline, "fraud", f.X_train, f.y_train, X_val=f.X_val, y_val=f.y_val)
    if mode == "ab":
        options.setdefault("split", 0.5)
    return ExperimentDesk(ui.registry).start("fraud", mode=mode, candidate=2, **options)


def worse_traffic(ui, experiment, n=1200):
    """A/B traffic where the candidate is right 70% of the time and the control 92%."""
    inputs = json.loads(ui.fitted.X_val.iloc[:100].to_json(orient="records"))
    rng = np.random.default_rng(2)
    rows = []
    for i in range(n):
        unit = f"u{i}"
        arm = assign(experiment.salt, unit, experiment.split)
        treated = arm == TREATMENT
        truth = int(rng.random() < 0.3)
        right = rng.random() < (0.70 if treated else 0.92)
        version = experiment.candidate_version if treated else experiment.control_version
        rows.append({"arm": arm, "version": version, "unit": unit, "inputs": inputs[i % 100],
                     "label": truth if right else 1 - truth, "truth": truth})  # fmt: skip
    write_traffic(ui.registry.store, experiment, rows)


def test_experiments_show_in_the_menu_the_models_table_the_model_page_and_their_own(ui):
    """A running shadow: listed with its live verdict, a column of the models table links to
    it, the model page has an Experiments section, its page shows the report and both stops."""
    e = with_experiment(ui)
    ui.login()
    models = ui.client.get("/ui").text
    assert '<a href="/ui/experiments">Experiments</a>' in models
    assert f'<a href="/ui/experiments/{e.id}">shadow of v2</a>' in models
    listed = ui.client.get("/ui/experiments")
    assert listed.status_code == 200 and f'href="/ui/experiments/{e.id}"' in listed.text
    assert "cannot trust: too few outcomes" in listed.text and "live" in listed.text
    model = ui.client.get("/ui/models/fraud").text
    assert "<h2>Experiments</h2>" in model and f"/ui/experiments/{e.id}" in model
    page = ui.client.get(f"/ui/experiments/{e.id}")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "fraud:2 vs fraud:1 (production), shadow" in page.text
    assert f'href="/ui/experiments/{e.id}/stop?decision=promote"' in page.text
    assert f'href="/ui/experiments/{e.id}/stop?decision=abandon"' in page.text
    assert "<h2>Arms</h2>" in page.text


def test_without_experiments_the_pages_say_how_to_start_one_and_the_model_has_no_section(ui):
    """No empty placeholders: the list says how to start one; a model page has no section."""
    ui.login()
    assert "slipway experiment start MODEL" in ui.client.get("/ui/experiments").text
    assert "<h2>Experiments</h2>" not in ui.client.get("/ui/models/fraud").text


def test_abandon_asks_first_then_stops_audited_as_the_key_via_ui(ui_any):
    """On both stores: GET asks (with the verdict now); POST with the token stops it through
    ExperimentDesk: production unchanged, stopped by the key, an experiment_stop event via ui."""
    ui = ui_any
    e = with_experiment(ui)
    csrf = ui.login()
    ask = ui.client.get(f"/ui/experiments/{e.id}/stop?decision=abandon")
    assert "keep production of &#39;fraud&#39; at version 1" in ask.text
    assert "Verdict now: cannot trust" in ask.text and 'name="csrf"' in ask.text
    assert book.get(ui.registry.store, e.id).running
    answer = ui.client.post(f"/ui/experiments/{e.id}/stop",
                            data={"csrf": csrf, "decision": "abandon"},
                            follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/ui/experiments/{e.id}?done=abandoned"
    stopped = book.get(ui.registry.store, e.id)
    assert (stopped.decision, stopped.stopped_by) == ("abandoned", "admin-key")
    assert ui.registry.aliases("fraud") == {"production": 1}
    event = ui.registry.audit("fraud", limit=1)[0]
    assert (event.action, event.actor, event.detail["via"]) == (
        "experiment_stop",
        "admin-key",
        "ui",
    )
    assert event.detail["decision"] == "abandoned" and event.detail["experiment"] == e.id
    after = ui.client.get(answer.headers["location"]).text
    assert "Experiment stopped: production is unchanged." in after
    assert "Stopped</strong> by admin-key" in after and "stop?decision" not in after


def test_promote_moves_production_through_the_audited_promotion(ui):
    """Stop and promote: production points at the candidate; the promotion and the stop are
    both audited as the key via ui."""
    e = with_experiment(ui)
    csrf = ui.login()
    ask = ui.client.get(f"/ui/experiments/{e.id}/stop?decision=promote").text
    assert "point production of &#39;fraud&#39; at the candidate, version 2" in ask
    answer = ui.client.post(f"/ui/experiments/{e.id}/stop",
                            data={"csrf": csrf, "decision": "promote"},
                            follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303 and answer.headers["location"].endswith("done=promoted")
    assert ui.registry.aliases("fraud") == {"production": 2}
    stop_event, promote_event = ui.registry.audit("fraud", limit=2)
    assert (promote_event.action, promote_event.actor) == ("promote", "admin-key")
    assert promote_event.detail["via"] == "ui" and (promote_event.to_version == 2)
    assert (stop_event.action, stop_event.detail["decision"]) == ("experiment_stop", "promoted")


def test_a_worse_candidate_needs_the_confirmation_that_says_so(ui):
    """With a *worse* verdict the confirmation says so and sends force; a POST without it is
    refused (409, production unchanged); with it, the promotion is recorded as forced."""
    e = with_experiment(ui, mode="ab")
    worse_traffic(ui, e)
    csrf = ui.login()
    assert "candidate worse" in ui.client.get(f"/ui/experiments/{e.id}").text
    ask = ui.client.get(f"/ui/experiments/{e.id}/stop?decision=promote").text
    assert "Promote anyway" in ask and 'name="force" value="1"' in ask
    assert "the audit trail records the stop as forced" in ask
    refused = ui.client.post(f"/ui/experiments/{e.id}/stop",
                             data={"csrf": csrf, "decision": "promote"})  # fmt: skip
    assert refused.status_code == 409 and "says the candidate is worse" in refused.text
    assert ui.registry.aliases("fraud") == {"production": 1}
    assert book.get(ui.registry.store, e.id).running
    forced = ui.client.post(f"/ui/experiments/{e.id}/stop",
                            data={"csrf": csrf, "decision": "promote", "force": "1"},
                            follow_redirects=False)  # fmt: skip
    assert forced.status_code == 303 and ui.registry.aliases("fraud") == {"production": 2}
    assert ui.registry.audit("fraud", limit=1)[0].detail["forced"] is True
    kept = ui.client.get(f"/ui/experiments/{e.id}").text
    assert "candidate worse" in kept and "at its stop" in kept


def test_stopping_without_the_csrf_token_is_refused_and_changes_nothing(ui):
    """No token, a wrong one, or another session's: 403, and the experiment keeps running."""
    e = with_experiment(ui)
    ui.login()
    foreign = ui.login(client=ui.other_client())
    for token in (None, "0" * 64, foreign):
        form = {"decision": "promote"} if token is None else {"decision": "promote", "csrf": token}
        answer = ui.client.post(f"/ui/experiments/{e.id}/stop", data=form)
        assert answer.status_code == 403 and "CSRF token" in answer.text
    assert book.get(ui.registry.store, e.id).running
    assert ui.registry.aliases("fraud") == {"production": 1}


@pytest.mark.parametrize(
    ("method", "path", "status", "text"),
    [
        ("get", "/ui/experiments/fraud-9", 404, "fraud-9"),
        ("get", "/ui/experiments/{id}/stop?decision=ship", 422, "not one of promote, abandon"),
        ("post", "/ui/experiments/{id}/stop", 422, "not one of promote, abandon"),
        ("get", "/ui/experiments?model=nope", 404, "nope"),
    ],
)
def test_bad_requests_are_pages_naming_the_problem(ui, method, path, status, text):
    """Unknown experiments and models, and a decision that is neither promote nor abandon."""
    e = with_experiment(ui)
    csrf = ui.login()
    url = path.format(id=e.id)
    if method == "get":
        answer = ui.client.get(url)
    else:
        answer = ui.client.post(url, data={"csrf": csrf, "decision": "ship"})
    assert answer.status_code == status and text in answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert book.get(ui.registry.store, e.id).running


def test_a_stopped_experiment_cannot_be_stopped_again(ui):
    """The confirmation and the POST of a stopped experiment are 409 pages; nothing moves."""
    e = with_experiment(ui)
    csrf = ui.login()
    ExperimentDesk(ui.registry).stop(e.id, promote=False)
    assert ui.client.get(f"/ui/experiments/{e.id}/stop?decision=promote").status_code == 409
    again = ui.client.post(f"/ui/experiments/{e.id}/stop",
                           data={"csrf": csrf, "decision": "promote"})  # fmt: skip
    assert again.status_code == 409 and "is not running" in again.text
    assert ui.registry.aliases("fraud") == {"production": 1}


def test_the_pages_need_a_session(ui):
    """Without logging in, the experiments pages send the browser to the login page."""
    e = with_experiment(ui)
    for path in ("/ui/experiments", f"/ui/experiments/{e.id}"):
        answer = ui.client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and "/ui/login" in answer.headers["location"]
    refused = ui.client.post(f"/ui/experiments/{e.id}/stop", data={"decision": "abandon"})
    assert refused.status_code == 401 and book.get(ui.registry.store, e.id).running
