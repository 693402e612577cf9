"""API keys on every route but health, roles, revocation, rate and concurrency limits, body size."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import httpx
import pytest
from starlette.requests import ClientDisconnect

from slipway.clock import utcnow
from slipway.exceptions import (
    MalformedRequest,
    Overloaded,
    RateLimited,
    RequestTooLarge,
    Unauthorized,
)
from slipway.keys import ApiKey, KeyStore, hash_token
from slipway.serving.auth import KeyCache
from slipway.serving.gate import Gate
from slipway.serving.limits import (
    ConcurrencyCap,
    TokenBuckets,
    check_content_length,
    check_depth,
    check_rows,
    limited_receive,
    read_body_first,
)
from slipway.serving.metrics import Metrics

GUARDED = [
    ("GET", "/v1/models"),
    ("GET", "/v1/models/fraud"),
    ("POST", "/v1/models/fraud/predict"),
    ("POST", "/v1/feedback"),
    ("GET", "/v1/models/fraud/predictions/k1"),
    ("POST", "/v1/models/fraud/reload"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/docs/static/swagger-ui-bundle.js"),
    ("GET", "/v2"),
    ("GET", "/v2/models/fraud"),
    ("POST", "/v2/models/fraud/infer"),
    ("POST", "/invocations"),
]
OPEN = ["/health", "/ready", "/v2/health/live", "/v2/health/ready", "/ping"]


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_every_route_but_health_needs_a_key(harness, method, path):
    """No key, or a wrong one, is a 401 with a JSON error and a WWW-Authenticate header."""
    for headers in ({}, {"Authorization": "Bearer slw_wrong"}, {"X-API-Key": "nope"}):
        r = harness.client.request(method, path, headers=headers)
        assert r.status_code == 401, (path, r.text)
        assert "error" in r.json() and r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", OPEN)
def test_liveness_and_readiness_are_open(harness, path):
    """Health routes answer without a key."""
    assert harness.client.get(path).status_code == 200


def test_both_key_headers_work(harness):
    """Authorization: Bearer and X-API-Key are both accepted."""
    token = harness.keys["predict"]
    assert harness.client.get("/v1/models", headers={"X-API-Key": token}).status_code == 200
    bearer = {"Authorization": f"bearer {token}"}
    assert harness.client.get("/v1/models", headers=bearer).status_code == 200


def test_predict_keys_get_403_on_admin_routes(harness):
    """Reload needs an admin key."""
    r = harness.post("/v1/models/fraud/reload", role="predict")
    assert r.status_code == 403 and "admin" in r.json()["error"]
    assert harness.post("/v1/models/fraud/reload", role="admin").status_code == 200


def test_revoked_key_stops_working_without_a_restart(harness):
    """After `keys revoke`, the next refresh of the cache refuses the key."""
    assert harness.get("/v1/models").status_code == 200
    KeyStore(harness.registry.store).revoke("predict-key")
    harness.service.keys.refresh()  # what the background thread does every poll_seconds
    r = harness.get("/v1/models")
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    assert harness.get("/v1/models", role="admin").status_code == 200


def test_the_background_refresher_revokes_a_key_in_process(harness):
    """The app starts the key refresher: with a 0.1 s poll and no manual refresh, a revoked key
    is refused within seconds while the other key keeps working."""
    assert harness.get("/v1/models").status_code == 200
    KeyStore(harness.registry.store).revoke("predict-key")
    deadline = time.monotonic() + 20  # a bound, not a race: 200 polls at 0.1 s
    while harness.get("/v1/models").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    r = harness.get("/v1/models")
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    assert harness.get("/v1/models", role="admin").status_code == 200


def test_no_key_ever_appears_in_logs_or_error_bodies(harness, caplog):
    """The access log names the key, never the key itself; errors never echo it."""
    caplog.set_level(logging.INFO, logger="slipway")
    token = harness.keys["predict"]
    harness.post("/v1/models/fraud/predict", {"features": {"x": 1}})
    r = harness.client.get("/v1/models", headers={"Authorization": f"Bearer {token}x"})
    assert token not in r.text
    lines = [json.loads(rec.message) for rec in caplog.records if rec.name == "slipway.access"]
    assert [line["key"] for line in lines] == ["predict-key", None]
    assert token not in caplog.text


def test_access_log_lines_are_json_with_request_id_key_route_status_latency(harness, caplog):
    """One JSON line per request; the request id is echoed in X-Request-ID."""
    caplog.set_level(logging.INFO, logger="slipway.access")
    r = harness.post(
        "/v1/models/fraud/predict",
        {"instances": harness.rows("fraud", 2)},
        headers={"X-Request-ID": "req-42"},
    )
    assert r.headers["x-request-id"] == "req-42"
    (line,) = [json.loads(rec.message) for rec in caplog.records if rec.name == "slipway.access"]
    assert line["request_id"] == "req-42" and line["key"] == "predict-key"
    assert line["route"] == "/v1/models/{name}/predict" and line["status"] == 200
    assert isinstance(line["latency_ms"], float) and (
        line["model"],
        line["version"],
        line["rows"],
    ) == (
        "fraud",
        1,
        2,
    )


def test_rate_limit_answers_429_with_retry_after(serve):
    """A key that exhausts its bucket gets 429 and Retry-After; other keys are unaffected; the
    bucket refills at the rate (the limiter's clock is a fake one here, so nothing races)."""
    now = [100.0]
    h = serve(serve_rate_limit=0.5, serve_rate_burst=2, clock=lambda: now[0])
    statuses = [h.get("/v1/models").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    r = h.get("/v1/models")
    assert r.status_code == 429 and r.headers["retry-after"] == "2"  # one token at 0.5/s
    assert "predict-key" in r.json()["error"] and "0.5 requests per second" in r.json()["error"]
    assert h.get("/v1/models", role="admin").status_code == 200
    now[0] += 1.9
    assert h.get("/v1/models").status_code == 429
    now[0] += 0.1
    fast = {"features": h.rows("fraud", 1)[0]}
    assert h.post("/v1/models/fraud/predict", fast).status_code == 200  # the direct lane too
    assert h.post("/v1/models/fraud/predict", fast).status_code == 429


def test_token_bucket_refills_at_the_rate():
    """Tokens come back at `rate` per second up to `burst`."""
    now = [0.0]
    buckets = TokenBuckets(rate=2, burst=2, clock=lambda: now[0])
    buckets.take("k")
    buckets.take("k")
    with pytest.raises(RateLimited) as info:
        buckets.take("k")
    assert info.value.retry_after == 1
    now[0] = 0.5
    buckets.take("k")
    with pytest.raises(RateLimited):
        buckets.take("k")
    assert TokenBuckets(rate=0, burst=1).take("k") is None  # rate 0: unlimited


def test_declared_body_over_the_limit_is_413_before_reading(serve):
    """A Content-Length above the limit is refused at once."""
    h = serve(serve_max_body_bytes=2048)
    body = json.dumps({"instances": h.rows("fraud", 1) * 100}).encode()
    r = h.client.post("/v1/models/fraud/predict", content=body, headers=h.auth())
    assert r.status_code == 413 and "2,048 bytes" in r.json()["error"]


def test_streamed_body_over_the_limit_is_413(serve):
    """A chunked body (no Content-Length) is cut off once it passes the limit."""
    h = serve(serve_max_body_bytes=2048)
    chunks = [b'{"instances": [', *([b'{"amount": 1.0},'] * 400), b"{}]}"]
    r = h.client.post("/v1/models/fraud/predict", content=iter(chunks), headers=h.auth())
    assert r.status_code == 413 and "more than 2,048 bytes" in r.json()["error"]


def _gate(app, cap: int) -> Gate:
    return Gate(
        app,
        keys=None,
        buckets=TokenBuckets(0, 1),
        cap=ConcurrencyCap(cap),
        max_body_bytes=1 << 20,
        metrics=Metrics(),
    )


def test_concurrency_cap_sheds_excess_with_503():
    """With `cap` requests in flight, the next one is refused at once with 503 + Retry-After."""
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow_app(scope, receive, send):
        entered.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def scenario():
        transport = httpx.ASGITransport(app=_gate(slow_app, cap=1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            first = asyncio.create_task(client.get("/v1/models"))
            await entered.wait()
            second = await client.get("/v1/models")
            release.set()
            return await first, second

    first, second = asyncio.run(scenario())
    assert first.status_code == 200
    assert second.status_code == 503 and second.headers["retry-after"] == "1"
    assert "capacity" in second.json()["error"]


def test_concurrency_cap_counts_and_releases():
    """enter() beyond the limit raises Overloaded; leave() frees a slot."""
    cap = ConcurrencyCap(2)
    cap.enter()
    cap.enter()
    with pytest.raises(Overloaded):
        cap.enter()
    cap.leave()
    cap.enter()
    assert cap.in_flight == 2


def test_rate_zero_never_limits_and_a_full_bucket_holds_only_a_burst():
    """rate 0 lets every request through; an idle bucket refills to `burst`, never beyond."""
    unlimited = TokenBuckets(rate=0, burst=1)
    for _ in range(5):
        unlimited.take("k")
    now = [0.0]
    buckets = TokenBuckets(rate=1, burst=2, clock=lambda: now[0])
    buckets.take("k")
    now[0] = 100.0
    buckets.take("k")
    buckets.take("k")
    with pytest.raises(RateLimited) as info:
        buckets.take("k")
    assert info.value.retry_after == 1 and "bursts of 2" in str(info.value)
    slow = TokenBuckets(rate=0.25, burst=1, clock=lambda: now[0])
    slow.take("k")
    now[0] += 2.0  # half a token back: the other half takes 2 s more
    with pytest.raises(RateLimited) as info:
        slow.take("k")
    assert info.value.retry_after == 2


def test_idle_buckets_are_forgotten_after_five_minutes():
    """A new client sweeps, at most once per 300 s, the buckets idle for more than 300 s."""
    now = [0.0]
    buckets = TokenBuckets(rate=1, burst=1, clock=lambda: now[0])

    def take(client, at):
        now[0] = at
        buckets.take(client)

    take("a", 0.0)
    take("x", 0.5)
    take("b", 300.0)  # exactly 300 s since the last sweep: no sweep yet
    assert set(buckets._buckets) == {"a", "x", "b"}
    take("c", 300.5)  # sweeps: "a" idle 300.5 s goes, "x" idle exactly 300 s stays
    assert set(buckets._buckets) == {"x", "b", "c"}
    take("d", 300.6)  # the last sweep was 0.1 s ago: "x" (idle 300.1 s) is kept until the next
    assert set(buckets._buckets) == {"x", "b", "c", "d"}
    take("b", 600.0)  # a known client never sweeps
    assert set(buckets._buckets) == {"x", "b", "c", "d"}
    take("e", 601.0)  # the next sweep: only "b" was used in the last 300 s
    assert set(buckets._buckets) == {"b", "e"}


def test_a_lent_slot_is_given_back_while_waiting_and_taken_back_after():
    """While an admitted request waits, its slot is free for another; it is taken back after."""
    cap = ConcurrencyCap(1)
    cap.enter()
    with cap.lent():
        assert cap.in_flight == 0
        cap.enter()  # another request uses the lent slot
        assert cap.in_flight == 1
    assert cap.in_flight == 2  # back without being refused, past the limit
    cap.leave()
    cap.leave()
    with pytest.raises(RuntimeError), cap.lent():
        raise RuntimeError("the wait failed")
    assert cap.in_flight == 0


def test_declared_body_sizes_are_checked_by_the_header_alone():
    """Content-Length up to the limit is the declared size; above it 413; not a number 400."""
    other = (b"content-type", b"application/json")
    assert check_content_length([other], 10) is None
    assert check_content_length([other, (b"content-length", b"10")], 10) == 10
    with pytest.raises(RequestTooLarge, match="declares 11 bytes; this server accepts at most 10"):
        check_content_length([(b"content-length", b"11"), other], 10)
    with pytest.raises(MalformedRequest, match="Content-Length b'ten' is not a number"):
        check_content_length([(b"content-length", b"ten")], 10)


def _receiver(*messages):
    queue = list(messages)

    async def receive():
        return queue.pop(0)

    return receive


def _part(body: bytes, more: bool) -> dict:
    return {"type": "http.request", "body": body, "more_body": more}


def test_a_streamed_body_is_stopped_just_past_the_limit():
    """limited_receive lets exactly `limit` bytes through and stops at the next one."""

    async def read_all(receive):
        return [await receive() for _ in range(3)]

    exact = _receiver(_part(b"12345", True), _part(b"67890", False), {"type": "http.disconnect"})
    got = asyncio.run(read_all(limited_receive(exact, 10)))
    assert [m.get("body") for m in got] == [b"12345", b"67890", None]
    over = _receiver(_part(b"12345", True), _part(b"678901", False), {"type": "http.disconnect"})
    with pytest.raises(RequestTooLarge, match="sent more than 10 bytes"):
        asyncio.run(read_all(limited_receive(over, 10)))


def test_the_body_is_read_first_then_replayed_once():
    """read_body_first joins the chunks, hands them to the app once, then the real receive."""

    async def scenario(messages, declared, limit, replay=True):
        scope: dict = {}
        original = _receiver(*messages)
        if replay:  # the default
            receive = await read_body_first(scope, original, declared, limit)
        else:
            receive = await read_body_first(scope, original, declared, limit, replay)
        if not replay:
            return scope, receive is original, None
        return scope, await receive(), await receive()

    chunks = [_part(b"ab", True), _part(b"cd", True), _part(b"e", False)]
    scope, first, then = asyncio.run(scenario([*chunks, {"type": "http.disconnect"}], None, 5))
    assert scope["slipway.body"] == b"abcde" and then == {"type": "http.disconnect"}
    assert first == {"type": "http.request", "body": b"abcde", "more_body": False}
    last = {"type": "http.request", "body": b"cd"}  # no more_body: the last chunk (ASGI)
    scope, first, _ = asyncio.run(scenario([_part(b"ab", True), last, {}], None, 5))
    assert first["body"] == b"abcd" and scope["slipway.body"] == b"abcd"
    scope, same, _ = asyncio.run(scenario([_part(b"abc", False)], None, 5, replay=False))
    assert scope["slipway.body"] == b"abc" and same
    scope, first, _ = asyncio.run(scenario([_part(b"abcdef", False), {}], None, 6))
    assert first["body"] == b"abcdef"  # exactly the limit, in one message
    with pytest.raises(RequestTooLarge, match="more than 5 bytes"):
        asyncio.run(scenario([_part(b"abcdef", False)], None, 5))
    with pytest.raises(RequestTooLarge, match="more than 4 bytes"):
        asyncio.run(scenario(chunks, None, 4))
    scope, _, _ = asyncio.run(scenario([*chunks, {}], 5, 4))  # declared: the parser cut it
    assert scope["slipway.body"] == b"abcde"
    for cut in ([{"type": "http.disconnect"}], [_part(b"ab", True), {"type": "http.disconnect"}]):
        with pytest.raises(ClientDisconnect):
            asyncio.run(scenario(cut, None, 5))


def test_rows_and_nesting_are_refused_just_past_their_limits():
    """check_rows allows `limit` rows; check_depth counts the body as level 1, scalars as none."""
    check_rows(3, 3)
    with pytest.raises(RequestTooLarge, match="4 rows; this server accepts at most 3"):
        check_rows(4, 3)
    check_depth(7, 0)
    check_depth("text", 0)
    check_depth({"a": 1, "b": "x"}, 1)
    check_depth([{"a": [1, {"b": [2]}]}, 3, "s"], 5)
    with pytest.raises(MalformedRequest, match="nested more than 4 levels"):
        check_depth([{"a": [1, {"b": [2]}]}, 3, "s"], 4)
    with pytest.raises(MalformedRequest, match="nested more than 1 levels"):
        check_depth({"a": {}}, 1)
    with pytest.raises(MalformedRequest, match="nested more than 1 levels"):
        check_depth([[]], 1)


def test_key_cache_keeps_the_last_copy_when_the_database_fails(harness, caplog):
    """A failed refresh keeps serving the keys it had (and logs a warning)."""

    class Broken:
        def active(self):
            raise RuntimeError("database down")

    cache = KeyCache(KeyStore(harness.registry.store))
    cache.refresh()
    cache.keys = Broken()  # type: ignore[assignment]
    cache.poll_seconds = 0.01
    with caplog.at_level(logging.WARNING, logger="slipway.serving.auth"):
        cache.start()
        deadline = time.monotonic() + 20  # a bound, not a race: the first poll is at 0.01 s
        while "database down" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
        cache.stop()
    assert len(cache) == 2 and "database down" in caplog.text


class FakeKeys:
    """A KeyStore stand-in: the active keys are whatever the test says."""

    def __init__(self, **tokens: str) -> None:
        self.tokens = dict(tokens)  # key name -> plain token
        self.reads = 0

    def active(self):
        self.reads += 1
        return {
            hash_token(t): ApiKey(name, "predict", t[:8], utcnow())
            for name, t in self.tokens.items()
        }


@pytest.mark.parametrize(
    ("headers", "outcome"),
    [
        ([(b"authorization", b"Bearer tok-a")], "a"),
        ([(b"authorization", b"bEaReR  tok-a ")], "a"),
        ([(b"x-api-key", b" tok-b ")], "b"),
        ([(b"authorization", b"Bearer tok-a"), (b"x-api-key", b"wrong")], "a"),
        ([(b"x-api-key", b"wrong"), (b"authorization", b"Bearer tok-b")], "b"),
        ([], "missing"),
        ([(b"authorization", b"Bearer ")], "missing"),
        ([(b"authorization", b"Basic tok-a")], "missing"),
        ([(b"x-api-key", b"  ")], "missing"),
        ([(b"x-authorization", b"Bearer tok-a")], "missing"),
        ([(b"authorization", b"Bearer tok-c")], "invalid"),
    ],
)
def test_authenticate_reads_bearer_or_x_api_key(headers, outcome):
    """The key comes from `Authorization: Bearer` (any case) or `X-API-Key`; no usable header
    says how to send one, an unknown key says it is not valid."""
    cache = KeyCache(FakeKeys(a="tok-a", b="tok-b"))  # type: ignore[arg-type]
    cache.refresh()
    assert len(cache) == 2
    if outcome in ("a", "b"):
        assert cache.authenticate(headers).name == outcome
        return
    with pytest.raises(Unauthorized) as info:
        cache.authenticate(headers)
    expected = "needs an API key" if outcome == "missing" else "not valid"
    assert expected in str(info.value)


def test_the_refresher_follows_the_keys_stops_and_restarts():
    """start() refreshes every poll in a daemon thread; stop() ends it; a second start() works."""
    keys = FakeKeys(a="tok-a")
    cache = KeyCache(keys, poll_seconds=0.01)  # type: ignore[arg-type]
    assert cache.poll_seconds == 0.01 and KeyCache(keys).poll_seconds == 1.0  # type: ignore[arg-type]

    def refreshers():
        return [t for t in threading.enumerate() if t.name == "slipway-keys"]

    def eventually(condition):
        deadline = time.monotonic() + 20  # a bound, not a race: polls come every 0.01 s
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        return condition()

    for round_ in range(2):
        keys.tokens["b"] = "tok-b"
        cache.start()
        cache.start()  # idempotent: still one thread
        assert len(refreshers()) == 1 and refreshers()[0].daemon
        assert eventually(lambda: len(cache) == 2), round_
        del keys.tokens["b"]
        assert eventually(lambda: len(cache) == 1), round_
        cache.stop()
        assert refreshers() == []
    reads = keys.reads
    time.sleep(0.05)
    assert keys.reads == reads  # stopped: no more reads


def test_server_without_keys_refuses_to_start_unless_no_auth(serve, tmp_path):
    """create_app's startup raises with no keys; --no-auth starts and logs a warning."""
    from fastapi.testclient import TestClient

    from slipway.config import Settings
    from slipway.exceptions import ConfigError
    from slipway.registry import Registry
    from slipway.serving import create_app

    s = Settings(home=tmp_path / "empty", user="t")
    with pytest.raises(ConfigError, match="No API keys"), TestClient(create_app(s)):
        pass
    open_app = create_app(s.model_copy(update={"serve_auth": False}))
    with TestClient(open_app) as client:
        assert client.get("/v1/models").json() == {"models": []}
    Registry(s).store.dispose()
