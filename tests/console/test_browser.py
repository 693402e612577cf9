"""The console in a real headless Chromium against a real `slipway serve`.

Debian's ``chromium`` and ``chromium-driver`` drive it through Selenium (``.ci/run`` and the
Makefile install them). The tests skip, saying so, only when they are absent on a developer's
machine; under CI (``CI=true``) a missing browser is a failure. Screenshots of every page go to
``test-artifacts/console/`` (git-ignored), or to ``$SLIPWAY_TEST_ARTIFACTS/console``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from slipway.config import Settings
from slipway.console.charts import ESTIMATE_COLOR
from slipway.keys import KeyStore
from slipway.lifecycle import CheckPolicy, check
from slipway.monitoring import Monitor
from slipway.registry import Registry
from slipway.serving.process import ServerProcess
from slipway.testing import transactions

# One worker takes the module, so the served site and Chromium (module fixtures) start once.
pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.xdist_group("browser")]

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("SLIPWAY_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "console"
ZONE = "America/New_York"  # the browser's zone, so local times differ from UTC


def need_browser() -> None:
    """Fail, naming the install command, when Debian's chromium or chromedriver is missing
    (`make test` and `.ci/run` install them through `.ci/browser.sh`)."""
    missing = [str(p) for p in (CHROMIUM, DRIVER) if not p.exists()]
    if not missing:
        return
    reason = (f"browser tests need {' and '.join(missing)}: "
              "apt-get install -y chromium chromium-driver")  # fmt: skip
    pytest.fail(reason + " (.ci/browser.sh installs them as root)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A store with fraud v1 (production) and v2, keys, labeled traffic and a monitoring run,
    served by a real `slipway serve`; yields (server, settings, admin key, env)."""
    need_browser()
    home = tmp_path_factory.mktemp("browser") / "home"
    settings = Settings(home=home, user="tester")
    registry = Registry(settings)
    X, y = transactions(1200)
    pre = ColumnTransformer([("num", StandardScaler(), ["amount", "hour"]),
                             ("cat", OneHotEncoder(handle_unknown="ignore"),
                              ["merchant", "country"])])  # fmt: skip
    for c in (1.0, 0.1):
        pipe = Pipeline([("pre", pre), ("model", LogisticRegression(C=c, max_iter=500))])
        pipe.fit(X[:800], y[:800])
        registry.register(pipe, "fraud", X[:800], y[:800], X_val=X[800:], y_val=y[800:],
                          onnx=False)  # fmt: skip
    registry.promote("fraud", 1)
    admin = KeyStore(registry.store).create("browser-admin", "admin")[1]
    predict = KeyStore(registry.store).create("browser-app", "predict")[1]
    env = {"SLIPWAY_HOME": str(home), "SLIPWAY_USER": "tester", "OMP_NUM_THREADS": "1",
           "SLIPWAY_SERVE_POLL_SECONDS": "0.2", "SLIPWAY_SERVE_LOG_FLUSH_SECONDS": "0.05",
           "SLIPWAY_SERVE_RATE_LIMIT": "0", "SLIPWAY_DATABASE_URL": ""}  # fmt: skip
    with ServerProcess(env=env, log_dir=home.parent / "server") as server:
        auth = {"Authorization": f"Bearer {predict}"}
        rows = X[800:1100].to_dict("records")
        answer = httpx.post(f"{server.url}/v1/models/fraud/predict", json={"instances": rows},
                            headers=auth, timeout=30)  # fmt: skip
        ids = [p["prediction_id"] for p in answer.json()["predictions"]]
        truth = [int(t) for t in y[800:1100]]
        feedback = [{"prediction_id": i, "label": t} for i, t in zip(ids, truth, strict=True)]
        time.sleep(0.5)  # the log writer flushes every 50 ms
        httpx.post(f"{server.url}/v1/feedback", json={"feedback": feedback}, headers=auth,
                   timeout=30).raise_for_status()  # fmt: skip
        Monitor(registry, sinks=[]).run("fraud")
        holdout = X[800:].assign(is_fraud=y[800:])
        policy = CheckPolicy.model_validate({"resamples": 200, "speed": {"repeats": 5}})
        check(registry, "fraud:1", against=None, data=holdout, policy=policy)
        yield server, settings, admin, env
    registry.store.dispose()


@pytest.fixture(scope="module")
def browser(site):
    """One headless Chromium for the module, in a fresh profile, in another time zone."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download
    profile = tempfile.mkdtemp(prefix="slipway-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={profile}", "--window-size=1280,800"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(str(DRIVER), env={**os.environ, "TZ": ZONE})
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def shot(driver, name: str) -> None:
    """Save a screenshot of the page (a test artifact)."""
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def wait(condition, timeout: float = 20.0, what: str = "condition"):
    """Poll ``condition`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def painted(driver) -> list[int]:
    """For each uPlot canvas on the page, how many of its pixels are not blank."""
    return driver.execute_script(
        """
        return Array.from(document.querySelectorAll('.uplot canvas')).map((c) => {
          const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) n++;
          return n;
        });
        """
    )


def painted_in(driver, color: str) -> list[int]:
    """For each chart whose spec has a series drawn in ``color`` (#rrggbb), how many of its
    canvas pixels are close to that color."""
    return driver.execute_script(
        """
        const want = arguments[0], rgb = [1, 3, 5].map((i) => parseInt(want.slice(i, i + 2), 16));
        return Array.from(document.querySelectorAll('figure.chart[data-chart]'))
          .filter((f) => JSON.parse(f.dataset.chart).series.some((s) => s.color === want))
          .map((f) => {
            const c = f.querySelector('.uplot canvas');
            if (!c) return 0;
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < data.length; i += 4) {
              if (data[i + 3] > 200 && rgb.every((v, k) => Math.abs(data[i + k] - v) < 40)) n++;
            }
            return n;
          });
        """,
        color,
    )


def errors_logged(driver) -> list[str]:
    """Console errors (script errors, CSP violations, failed loads) since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def log_in(driver, url: str, key: str) -> None:
    """Log in through the form."""
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/ui")
    assert "/ui/login" in driver.current_url
    field = driver.find_element(By.ID, "key")
    field.send_keys(key)
    field.submit()
    wait(lambda: driver.current_url.endswith("/ui"), what="the models page after login")


@pytest.fixture
def cli(slipway_command: str) -> Callable[..., str]:
    """``cli(env, *args)``: run the slipway CLI in a process (``slipway_command``) on the served
    store and return its stdout."""

    def run(env: dict[str, str], *args: str) -> str:
        done = subprocess.run([slipway_command, *args], capture_output=True, text=True,
                              env={**os.environ, **env}, timeout=120, check=True)  # fmt: skip
        return done.stdout

    return run


def test_every_page_renders_with_working_scripts_and_charts(site, browser):
    """Log in, open each page: no script or CSP error, charts painted, times in the browser's
    zone with UTC on hover; a screenshot of each."""
    from selenium.webdriver.common.by import By

    server, _, admin, _ = site
    log_in(browser, server.url, admin)
    pages = {"models": "/ui", "model": "/ui/models/fraud", "version": "/ui/models/fraud/versions/1",
             "monitoring": "/ui/monitoring", "monitoring-fraud": "/ui/monitoring/fraud",
             "batch": "/ui/batch", "keys": "/ui/keys", "traffic": "/ui/traffic",
             "experiments": "/ui/experiments"}  # fmt: skip
    for name, path in pages.items():
        browser.get(server.url + path)
        wait(lambda: browser.execute_script("return document.readyState") == "complete")
        if name == "monitoring-fraud":
            canvases = wait(lambda: painted(browser), what="monitoring charts")
            figures = browser.find_elements(By.CSS_SELECTOR, "figure.chart")
            assert len(canvases) == len(figures) >= 5
            assert all(n > 500 for n in canvases), canvases
            estimated = painted_in(browser, ESTIMATE_COLOR)
            assert estimated and all(n >= 10 for n in estimated), estimated
            legends = browser.execute_script(
                "return Array.from(document.querySelectorAll('figure.chart[data-chart]'))"
                ".filter((f) => JSON.parse(f.dataset.chart).series.some((s) => s.color === "
                "arguments[0])).map((f) => f.querySelector('.u-legend').textContent)",
                ESTIMATE_COLOR,
            )
            assert len(legends) == len(estimated) and all("estimated" in t for t in legends)
        if name == "version":
            assert "pass against no champion" in browser.find_element(By.ID, "check-verdict").text
        if name == "traffic":
            wait(lambda: int(browser.execute_script(
                "return document.getElementById('traffic').dataset.polls || 0")) >= 1)  # fmt: skip
            assert all(n > 500 for n in wait(lambda: painted(browser), what="traffic charts"))
        shot(browser, f"{name}-1280x800")
        assert errors_logged(browser) == [], name
    browser.get(server.url + "/ui/models/fraud")
    stamp = browser.find_element(By.CSS_SELECTOR, "time")
    assert stamp.get_attribute("title").endswith(" UTC")
    assert "UTC" not in stamp.text and (
        "EST" in stamp.text or "EDT" in stamp.text or "GMT-" in stamp.text
    )


def test_live_traffic_updates_without_a_reload(site, browser):
    """New predictions show up on the traffic page by polling, while the page stays loaded."""
    server, settings, admin, _ = site
    browser.get(server.url + "/ui/traffic")
    if "/ui/login" in browser.current_url:
        log_in(browser, server.url, admin)
        browser.get(server.url + "/ui/traffic")
    wait(lambda: int(browser.execute_script(
        "return document.getElementById('traffic').dataset.polls || 0")) >= 1)  # fmt: skip
    browser.execute_script("window.slipwayNoReload = 1")
    tiles = browser.execute_script("return document.getElementById('server-now').textContent")
    predict = KeyStore(Registry(settings).store).create("browser-live", "predict")[1]
    rows = [{"amount": 10.0, "hour": 3, "merchant": "gaming", "country": "US"}] * 4

    def post() -> int:
        answer = httpx.post(f"{server.url}/v1/models/fraud/predict", json={"instances": rows},
                            headers={"Authorization": f"Bearer {predict}"}, timeout=30)  # fmt: skip
        return answer.status_code

    wait(lambda: post() == 200, what="the server to know the new key")  # it re-reads keys
    for _ in range(4):
        post()
    polls = int(browser.execute_script("return document.getElementById('traffic').dataset.polls"))
    wait(lambda: int(browser.execute_script(
        "return document.getElementById('traffic').dataset.polls")) >= polls + 2, 30)  # fmt: skip
    assert browser.execute_script("return window.slipwayNoReload") == 1
    now = browser.execute_script("return document.getElementById('server-now').textContent")
    assert now != tiles and "fraud:1 predict requests/s" in now
    shot(browser, "traffic-live-1280x800")


def test_stop_an_experiment_from_the_console_as_the_cli_sees_it(site, browser, cli):
    """A shadow of fraud:2 started from the shell shows its live verdict; abandoning it by
    clicking through the confirmation stops it (the CLI lists it abandoned) and the audit trail
    names the key and the console; production stays where it was."""
    from selenium.webdriver.common.by import By

    server, _, admin, env = site
    cli(env, "experiment", "start", "fraud", "--mode", "shadow", "--candidate", "2")
    (running,) = [e for e in json.loads(cli(env, "experiment", "list", "--json"))
                  if e["status"] == "running"]  # fmt: skip
    browser.get(server.url + "/ui/experiments")
    if "/ui/login" in browser.current_url:
        log_in(browser, server.url, admin)
        browser.get(server.url + "/ui/experiments")
    assert "live" in browser.find_element(By.CSS_SELECTOR, "table.experiments tbody").text
    browser.find_element(By.LINK_TEXT, running["id"]).click()
    wait(lambda: browser.find_elements(By.ID, "verdict"), what="the experiment's page")
    assert "cannot trust" in browser.find_element(By.ID, "verdict").text
    shot(browser, "experiment-1280x800")
    browser.find_element(By.ID, "stop-abandon").click()
    wait(lambda: "/stop?decision=abandon" in browser.current_url, what="the confirmation")
    shot(browser, "experiment-stop-confirm-1280x800")
    browser.find_element(By.ID, "confirm").click()
    wait(lambda: "done=abandoned" in browser.current_url, what="the redirect after the stop")
    assert "Experiment stopped: production is unchanged." in browser.page_source
    assert errors_logged(browser) == []
    listed = json.loads(cli(env, "experiment", "list", "--json"))
    stopped = next(e for e in listed if e["id"] == running["id"])
    assert (stopped["status"], stopped["decision"], stopped["stopped_by"]) == (
        "stopped", "abandoned", "browser-admin")  # fmt: skip
    audit = json.loads(cli(env, "models", "audit", "fraud", "--json"))[0]
    assert (audit["action"], audit["actor"], audit["detail"]["via"]) == (
        "experiment_stop", "browser-admin", "ui")  # fmt: skip
    models = json.loads(cli(env, "models", "list", "--json"))
    assert next(m for m in models if m["name"] == "fraud")["aliases"] == {"production": 1}


def test_promote_from_the_console_moves_the_alias_the_cli_sees(site, browser, cli):
    """Promote version 2 by clicking through the confirmation; `slipway models` shows it, and
    the audit trail names the key and the console."""
    from selenium.webdriver.common.by import By

    server, _, admin, env = site
    browser.get(server.url + "/ui/models/fraud")
    if "/ui/login" in browser.current_url:
        log_in(browser, server.url, admin)
        browser.get(server.url + "/ui/models/fraud")
    browser.find_element(By.CSS_SELECTOR, 'a[href="/ui/models/fraud/promote?version=2"]').click()
    shot(browser, "promote-confirm-1280x800")
    browser.find_element(By.ID, "confirm").click()
    wait(lambda: "done=promoted" in browser.current_url, what="the redirect after promote")
    assert "production now points at version 2." in browser.page_source
    listed = json.loads(cli(env, "models", "list", "--json"))
    assert next(m for m in listed if m["name"] == "fraud")["aliases"] == {"production": 2}
    audit = json.loads(cli(env, "models", "audit", "fraud", "--json"))[0]
    assert (audit["action"], audit["actor"], audit["detail"]) == (
        "promote", "browser-admin", {"via": "ui", "checked": False})  # fmt: skip
    shot(browser, "model-after-promote-1280x800")


def test_a_state_change_without_the_csrf_token_is_refused(site, browser, cli):
    """A script on the page posting without the token gets 403 and nothing moves."""
    server, _, admin, env = site
    browser.get(server.url + "/ui/models/fraud")
    if "/ui/login" in browser.current_url:
        log_in(browser, server.url, admin)
        browser.get(server.url + "/ui/models/fraud")
    before = json.loads(cli(env, "models", "list", "--json"))
    status = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch('/ui/models/fraud/rollback', {method: 'POST', credentials: 'same-origin',
              headers: {'Content-Type': 'application/x-www-form-urlencoded'},
              body: 'alias=production'}).then((r) => done(r.status), (e) => done(String(e)));
        """
    )
    assert status == 403
    assert json.loads(cli(env, "models", "list", "--json")) == before
    errors_logged(browser)  # the refused fetch is logged as a failed load; expected here


def test_keyboard_sorting_and_a_phone_sized_screen(site, browser):
    """Headers sort from the keyboard; at 390x844 nothing overflows the page sideways."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    server, _, admin, _ = site
    browser.get(server.url + "/ui/models/fraud")
    if "/ui/login" in browser.current_url:
        log_in(browser, server.url, admin)
        browser.get(server.url + "/ui/models/fraud")
    header = browser.find_element(By.CSS_SELECTOR, "#versions thead th:first-child")
    button = header.find_element(By.TAG_NAME, "button")
    button.send_keys(Keys.ENTER)
    assert header.get_attribute("aria-sort") == "ascending"
    first = browser.find_element(By.CSS_SELECTOR, "#versions tbody tr:first-child th").text
    assert first == "1"
    button.send_keys(Keys.SPACE)
    assert header.get_attribute("aria-sort") == "descending"
    browser.get(server.url + "/ui/models/fraud")  # focus back at the top of a fresh page
    browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Skip to content"
    browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Slipway"
    browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Models"
    browser.set_window_size(390, 844)
    try:
        for name, path in (("models", "/ui"), ("version", "/ui/models/fraud/versions/1"),
                           ("monitoring-fraud", "/ui/monitoring/fraud")):  # fmt: skip
            browser.get(server.url + path)
            wait(lambda: browser.execute_script("return document.readyState") == "complete")
            time.sleep(0.3)
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 1, (path, overflow)
            shot(browser, f"{name}-390x844")
    finally:
        browser.set_window_size(1280, 800)


def test_log_out(site, browser):
    """The logout button ends the session: the console asks for a key again."""
    from selenium.webdriver.common.by import By

    server, _, admin, _ = site
    browser.get(server.url + "/ui")
    if "/ui/login" in browser.current_url:
        log_in(browser, server.url, admin)
    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait(lambda: "/ui/login?out=1" in browser.current_url, what="the login page after logout")
    assert "You are logged out." in browser.page_source
    browser.get(server.url + "/ui/keys")
    assert "/ui/login" in browser.current_url
    shot(browser, "login-1280x800")
