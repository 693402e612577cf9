"""A real `slipway serve` under attack: slow bodies, slow headers, many connections, forged
feedback ids. Another key must be served normally meanwhile."""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from slipway.config import Settings
from slipway.keys import KeyStore
from slipway.registry import Registry
from slipway.serving.log import IdGenerator
from slipway.serving.process import ServerProcess
from tests.serving.helpers import subprocess_env

pytestmark = pytest.mark.slow

PREDICT = "/v1/models/fraud/predict"


def prepare(tmp_path, register) -> tuple[Settings, dict[str, str], list[dict[str, Any]]]:
    """A store serving ``fraud``, an attacker's and a victim's key, and rows to predict."""
    s = Settings(home=tmp_path / "home", user="tester")
    registry = Registry(s)
    fitted = register(registry, "fraud")
    store = KeyStore(registry.store)
    keys = {who: store.create(who, "predict")[1] for who in ("attacker", "victim")}
    X = fitted.X_val.iloc[:2]
    rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in X.to_dict("records")]  # fmt: skip
    registry.store.dispose()
    return s, keys, rows


def open_request(server: ServerProcess, head: bytes, source: str = "127.0.0.1") -> socket.socket:
    """A connection that has sent ``head`` and nothing more."""
    sock = socket.create_connection(
        (server.host, server.port), timeout=60, source_address=(source, 0)
    )
    sock.sendall(head)
    return sock


def still_open_and_unanswered(sock: socket.socket) -> bool:
    """True while the server has neither answered nor closed the connection."""
    readable, _, _ = select.select([sock], [], [], 0)  # an answer, or the end of the stream
    return not readable


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    sock.close()
    return b"".join(chunks)


def victim_predictions(server: ServerProcess, token: str, rows: list[Any], n: int) -> list[int]:
    """The statuses of ``n`` predictions by the victim's key, from another loopback address."""
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(transport=transport, timeout=30) as client:
        return [
            client.post(server.url + PREDICT, json={"instances": rows}, headers=headers).status_code
            for _ in range(n)
        ]


def test_slow_bodies_and_headers_cannot_starve_another_key(tmp_path, register):
    """64 bodies and 8 header blocks trickling in: the other key gets 200s; they get 408s."""
    s, keys, rows = prepare(tmp_path, register)
    env = subprocess_env(
        s,
        SLIPWAY_SERVE_BODY_TIMEOUT_SECONDS="10",
        SLIPWAY_SERVE_HEADER_TIMEOUT_SECONDS="10",
        SLIPWAY_SERVE_MAX_CONCURRENCY="64",
    )
    with ServerProcess(env=env, log_dir=tmp_path / "server") as server:
        slow_body = (
            f"POST {PREDICT} HTTP/1.1\r\nHost: slipway\r\nAuthorization: Bearer "
            f"{keys['attacker']}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n"
        ).encode() + b'{"inst'
        slow_head = f"POST {PREDICT} HTTP/1.1\r\nHost: slipway\r\nContent-".encode()
        bodies = [open_request(server, slow_body) for _ in range(64)]
        heads = [open_request(server, slow_head) for _ in range(8)]
        time.sleep(1.0)  # let the server take every one of them in
        statuses = victim_predictions(server, keys["victim"], rows, 30)
        assert all(still_open_and_unanswered(sock) for sock in bodies + heads)
        assert statuses == [200] * 30
        for sock in bodies + heads:
            reply = answer(sock)
            assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
            assert b"did not arrive within 10 s" in reply
        assert victim_predictions(server, keys["victim"], rows, 3) == [200] * 3
    access = server.stdout()
    assert access.count('"status":408') == 64  # the slow bodies, recorded under their key
    assert '"key":"attacker"' in access


def test_one_address_cannot_take_every_connection(tmp_path, register):
    """Past SLIPWAY_SERVE_MAX_CONNECTIONS_PER_PEER an address gets 503; others are served."""
    s, keys, rows = prepare(tmp_path, register)
    env = subprocess_env(s, SLIPWAY_SERVE_MAX_CONNECTIONS_PER_PEER="8")
    with ServerProcess(env=env, log_dir=tmp_path / "server") as server:
        held = [open_request(server, b"") for _ in range(8)]
        time.sleep(0.5)
        refused = [open_request(server, b"") for _ in range(4)]
        for sock in refused:
            reply = answer(sock)
            assert reply.startswith(b"HTTP/1.1 503 ") and b"Too many connections" in reply
        assert all(still_open_and_unanswered(sock) for sock in held)
        assert victim_predictions(server, keys["victim"], rows, 5) == [200] * 5
        for sock in held:
            sock.close()
        time.sleep(0.5)
        with httpx.Client(timeout=30) as client:  # from 127.0.0.1 again, now below the cap
            r = client.post(server.url + PREDICT, json={"instances": rows},
                            headers={"Authorization": f"Bearer {keys['attacker']}"})  # fmt: skip
        assert r.status_code == 200


def forged_ids(n: int) -> list[str]:
    """Well-formed UUIDv7 ids no server made: half dated an hour ahead, half dated now."""
    fresh = IdGenerator().new(n)
    ahead = f"{int((time.time() + 3600) * 1000):012x}"
    future = [f"{ahead[:8]}-{ahead[8:]}{i[13:]}" for i in fresh[: n // 2]]
    return future + fresh[n // 2 :]


def test_forged_feedback_ids_do_not_hold_workers_or_slots(tmp_path, register):
    """70 threads sending feedback for forged ids: the other key's predictions and /ready stay
    200, and every forged id is reported unknown."""
    s, keys, rows = prepare(tmp_path, register)
    env = subprocess_env(s, SLIPWAY_SERVE_MAX_CONCURRENCY="64")
    with ServerProcess(env=env, log_dir=tmp_path / "server") as server:
        stop = threading.Event()
        answers: list[tuple[int, Any, list[str]]] = []

        def attack() -> None:
            headers = {"Authorization": f"Bearer {keys['attacker']}"}
            with httpx.Client(timeout=60) as client:
                while not stop.is_set():
                    ids = forged_ids(4)
                    body = {"feedback": [{"prediction_id": i, "label": 1} for i in ids]}
                    r = client.post(server.url + "/v1/feedback", json=body, headers=headers)
                    answers.append((r.status_code, r.json(), ids))

        threads = [threading.Thread(target=attack) for _ in range(70)]
        for t in threads:
            t.start()
        try:
            time.sleep(2.0)  # every thread has a request in flight, most of them waiting
            statuses = victim_predictions(server, keys["victim"], rows, 30)
            ready = httpx.get(server.url + "/ready", timeout=30).status_code
        finally:
            stop.set()
            for t in threads:
                t.join()

    # 70 attackers against a cap of 64 requests in flight: on a loaded machine the database
    # work of 64 of them can be in flight at once, and then a request is shed with the cap's
    # 503, anyone's, as the cap promises. What a forged id must never do is hold a slot while
    # it waits: then the slots stay full and nearly every request of the victim is shed.
    def shed(status: int, body: Any) -> bool:
        return status == 503 and body.get("code") == "overloaded"

    assert ready == 200 and statuses.count(200) >= 25, statuses
    assert all(s == 200 or s == 503 for s in statuses), statuses
    served = [(body, ids) for status, body, ids in answers if status == 200]
    assert len(served) > len(answers) / 2
    assert all(status == 200 or shed(status, body) for status, body, _ in answers)
    assert all(body["unknown"] == ids for body, ids in served)
