"""Load-test `slipway serve` against a naive FastAPI server and two echo servers, in one run.

The real ceiling is a bare ASGI app under uvicorn that reads the body, parses the JSON and
answers (``bench/servers/raw.py``, "% raw"); a FastAPI echo (``echo.py``) is the older one.
All of them serve the reference model (a 100-tree GradientBoostingClassifier on 20 features
behind a StandardScaler) or, for the echo servers, nothing at all; wrk drives each at 1 and 32
concurrent connections (two workers at 32 too). `slipway serve` runs as in production: API
key auth, rate limiting (a limit high enough not to refuse), metrics, the JSON access log and
the prediction log. Then, on the one-worker server: rows per second for requests of 8, 32 and
128 rows, and an exact check that the log holds one row per prediction a client received.
Each server's cold start (process start -> ready) and memory per worker are measured too.

    make bench            # or: .venv/bin/python bench/serve.py [--seconds 8]
    .venv/bin/python bench/serve.py --quick            # seconds: small runs, one worker
    .venv/bin/python bench/serve.py --quick --console  # + slipway serve without the console

`slipway serve` runs with the web console on (its default) and idle; `--console` also runs it
with the console off (SLIPWAY_SERVE_CONSOLE=false) at the same loads, for the ratio.

`--peers` also runs two other model servers on the same fitted pipeline, one worker each, at
the same loads with the same row, each from its own virtualenv (`make bench-peers` creates
them and runs this; see bench/README.md): MLflow's `mlflow models serve` (the pipeline exported
with `mlflow.sklearn.save_model` by ``servers/mlflow_export.py``) and BentoML with adaptive
batching on (``servers/bentoml_ref.py``). Each peer's answer must equal Slipway's label before
it is timed; a peer that is not installed, does not start or answers differently is skipped
with one line saying why. The peers table gives Slipway's ratio to each.

    make bench-peers                                   # creates .venv-mlflow, .venv-bentoml
    .venv/bin/python bench/serve.py --quick --peers    # everything, 2 s runs

Needs wrk (apt-get install wrk). Prints the tables; the ratios are what to compare between
runs, as absolute numbers on a shared 2-core machine move from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import joblib
import sklearn
import sqlalchemy as sa
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from slipway.config import Settings
from slipway.keys import KeyStore
from slipway.registry import Registry
from slipway.serving.process import ServerProcess, free_port
from slipway.store.schema import predictions

SERVERS = Path(__file__).parent / "servers"
REPO = Path(__file__).parent.parent
PREDICT = "/v1/models/ref/predict"
ROW_SIZES = (8, 32, 128)  # rows per request, besides the single row of the main table
EXACT_REQUESTS = 4000  # predictions whose every id is checked against the log


@dataclass
class Result:
    server: str
    workers: int
    clients: int
    rps: float
    p50_ms: float
    p99_ms: float
    responses: int
    errors: int
    warmup: int = 0
    rows: int = 1  # rows per request
    batch: float | None = None  # mean requests per model call (slipway only)


@dataclass
class Server:
    """What one server process cost: cold start and resident memory per worker."""

    name: str
    workers: int
    start_s: float
    rss_mb: list[float] = field(default_factory=list)
    supervisor_mb: float | None = None  # a peer's parent process (mlflow CLI, BentoML arbiter)


@dataclass
class Peer:
    """Another model server run on the reference model, from its own virtualenv."""

    name: str  # as printed in the tables
    package: str  # the distribution whose version is reported
    venv: Path
    path: str  # the prediction route
    ready: str  # a route that answers 200 once the model is loaded
    body: str = ""
    version: str = ""
    skipped: str = ""  # why it was not measured; empty when it was


class PeerUnavailable(Exception):
    """A peer could not be installed, exported, started or did not answer like Slipway."""


def reference_model(tmp: Path, trees: int = 100) -> tuple[Registry, Path, list[float]]:
    """Train, register (production) and dump the reference model; return a feature row."""
    X, y = make_classification(n_samples=5000, n_features=20, n_informative=10, random_state=0)
    pipe = make_pipeline(
        StandardScaler(), GradientBoostingClassifier(n_estimators=trees, random_state=0)
    )
    pipe.fit(X, y)
    registry = Registry(Settings(home=tmp / "home", user="bench"))
    registry.register(pipe, "ref", X, y, alias="production")
    path = tmp / "model.joblib"
    joblib.dump(pipe, path)
    return registry, path, [round(float(v), 4) for v in X[0]]


def wrk(
    url: str, body: str, headers: dict[str, str], clients: int, seconds: int, method: str = "POST"
) -> Result:
    """Run wrk once and parse requests/s, p50, p99, responses and non-2xx counts."""
    lines = [
        f'wrk.method = "{method}"',
        f"wrk.body = {json.dumps(body)}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    threads = 1 if clients == 1 else 2
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{clients}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        script.name,
        url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        return float(m[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m[2]]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    responses = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failed = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    n_errors = (int(errors[1]) if errors else 0) + (sum(map(int, failed.groups())) if failed else 0)
    return Result("", 0, clients, rps, ms("50"), ms("99"), responses, n_errors)


def wait_until_up(url: str, timeout: float = 60.0) -> None:
    """Poll ``url`` every 10 ms until it answers at all."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up") from None
            time.sleep(0.01)


@contextmanager
def uvicorn(
    app: str, workers: int, env: dict[str, str], access_log: bool
) -> Iterator[tuple[ServerProcess, float]]:
    """A plain uvicorn server for the baselines, on a free port, and its cold start (s)."""
    port = free_port()
    server = ServerProcess(port=port, env=env, log_dir=Path(env["SLIPWAY_HOME"]).parent / app)
    command = [sys.executable, "-m", "uvicorn", app, "--app-dir", str(SERVERS), "--port",
               str(port), "--workers", str(workers), "--log-level", "warning"]  # fmt: skip
    if not access_log:
        command.append("--no-access-log")
    server.log_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(server.stdout_path, "wb") as out, open(server.stderr_path, "wb") as err:
        server.process = subprocess.Popen(command, stdout=out, stderr=err, env=server.env)
    try:
        wait_until_up(server.url + "/docs")
        yield server, time.perf_counter() - started
    finally:
        server.stop()


def rss_mb(pid: int) -> float:
    """Resident memory of one process, MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) / 1024  # type: ignore[index]


def worker_rss_mb(pid: int, workers: int) -> list[float]:
    """Resident memory of each worker: the process itself, or its spawned children."""
    if workers == 1:
        return [rss_mb(pid)]
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    spawned = [int(c) for c in children
               if b"spawn" in Path(f"/proc/{c}/cmdline").read_bytes()]  # fmt: skip
    return [rss_mb(c) for c in spawned]


def last_line(text: str) -> str:
    """The last non-empty line of a log or an error output, shortened: the reason to print."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:240] if lines else "(no output)"


def log_reason(server: ServerProcess) -> str:
    """Why a peer failed, from its logs: the last exception line, else the last line."""
    text = server.stderr() + "\n" + server.stdout()
    errors = re.findall(r"^.*\b\w*(?:Error|Exception)\b.*$", text, re.M)
    return last_line(errors[-1] if errors else text)


def peers_for(row: list[float], mlflow_venv: Path, bentoml_venv: Path) -> list[Peer]:
    """MLflow's scoring server and BentoML (adaptive batching), each asked for the same row."""
    return [
        Peer(
            "mlflow serve",
            "mlflow",
            mlflow_venv,
            "/invocations",
            "/ping",
            json.dumps({"inputs": [row]}),
        ),
        Peer(
            "bentoml serve",
            "bentoml",
            bentoml_venv,
            "/predict",
            "/readyz",
            json.dumps({"rows": [row]}),
        ),
    ]


def peer_label(peer: Peer, answer: object) -> object:
    """The label in a peer's answer to the single row: ``{"predictions": [label]}`` from
    MLflow, ``[label]`` from the BentoML service."""
    if peer.package == "mlflow":
        return answer["predictions"][0]  # type: ignore[index]
    return answer[0]  # type: ignore[index]


def peer_version(peer: Peer) -> str:
    """The peer's installed version; refuses a virtualenv whose scikit-learn differs from ours
    (the same pickled pipeline would not be the same model)."""
    python = peer.venv / "bin" / "python"
    if not python.exists():
        raise PeerUnavailable(f"no {python} (make bench-peers creates it)")
    script = (
        "import importlib.metadata as m; "
        f"print(m.version({peer.package!r}), m.version('scikit-learn'))"
    )
    out = subprocess.run([str(python), "-c", script], capture_output=True, text=True)
    if out.returncode != 0:
        raise PeerUnavailable(
            f"{peer.package} or scikit-learn is not installed in {peer.venv} "
            f"({last_line(out.stderr)}); make bench-peers installs them"
        )
    version, theirs = out.stdout.split()
    if theirs != sklearn.__version__:
        raise PeerUnavailable(
            f"{peer.venv} has scikit-learn {theirs}, this run {sklearn.__version__}: the same "
            f"pipeline would not load as the same model; reinstall it with make bench-peers"
        )
    return version


@contextmanager
def peer_server(
    peer: Peer, tmp: Path, model_path: Path, env: dict[str, str], timeout: float = 180.0
) -> Iterator[tuple[ServerProcess, float]]:
    """Start a peer on a free port from its own virtualenv (its own process group), wait until
    ``peer.ready`` answers 200; yield it and its cold start (s); stop the whole group."""
    bin_dir = peer.venv / "bin"
    log_dir = tmp / peer.package
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **env,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # mlflow execs `uvicorn`
        "DO_NOT_TRACK": "true",
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENTOML_HOME": str(log_dir / "bentoml-home"),
        "MLFLOW_TRACKING_URI": (log_dir / "mlruns").as_uri(),
    }
    if peer.package == "mlflow":
        model_dir = log_dir / "model"
        export = subprocess.run(
            [str(bin_dir / "python"), str(SERVERS / "mlflow_export.py"), str(model_path),
             str(model_dir)],
            capture_output=True, text=True, env={**os.environ, **env}, cwd=log_dir,
        )  # fmt: skip
        if export.returncode != 0:
            raise PeerUnavailable(f"exporting the model failed: {last_line(export.stderr)}")
        command = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(model_dir),
                   "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"]  # fmt: skip
    else:
        command = [str(bin_dir / "bentoml"), "serve", "bentoml_ref:Reference", "--working-dir",
                   str(SERVERS), "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    server = ServerProcess(port=port, env=env, log_dir=log_dir)
    started = time.perf_counter()
    with open(server.stdout_path, "wb") as out, open(server.stderr_path, "wb") as err:
        server.process = subprocess.Popen(
            command, stdout=out, stderr=err, env=server.env, cwd=log_dir, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.process.poll() is not None:
                raise PeerUnavailable(
                    f"exited with code {server.process.returncode} before it was ready: "
                    f"{log_reason(server)}"
                )
            if "Application startup failed" in server.stdout() + server.stderr():
                # BentoML's arbiter restarts a failing worker instead of exiting
                raise PeerUnavailable(f"its application did not start: {log_reason(server)}")
            try:
                if httpx.get(server.url + peer.ready, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise PeerUnavailable(f"not ready after {timeout:.0f} s: {log_reason(server)}")
            time.sleep(0.02)
        yield server, time.perf_counter() - started
    finally:
        server.stop()
        with suppress(ProcessLookupError):  # its children too (uvicorn, BentoML's workers)
            os.killpg(server.process.pid, signal.SIGKILL)


def peer_rss_mb(pid: int) -> tuple[list[float], float | None]:
    """A peer's serving processes (the started process's children, or itself) and the memory
    of the parent that supervises them (the mlflow CLI, BentoML's arbiter), MB."""
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()]  # fmt: skip
    if not children:
        return [rss_mb(pid)], None
    return [rss_mb(c) for c in children], rss_mb(pid)


def run_peer(
    peer: Peer,
    tmp: Path,
    model_path: Path,
    env: dict[str, str],
    clients: list[int],
    seconds: int,
    expected: object,
) -> tuple[list[Result], Server | None]:
    """Start ``peer``, check it answers the row with Slipway's label, then load it like the
    others; on any failure print one line saying why and return nothing (never raise)."""
    try:
        peer.version = peer_version(peer)
        with peer_server(peer, tmp, model_path, env) as (server, start_s):
            answer = httpx.post(
                server.url + peer.path,
                content=peer.body,
                headers={"Content-Type": "application/json"},
                timeout=60,
            )
            got = peer_label(peer, answer.json()) if answer.status_code == 200 else None
            if got is None or str(got) != str(expected):
                raise PeerUnavailable(
                    f"answered {answer.status_code} {answer.text[:160]!r} to the reference row, "
                    f"where slipway serve answered label {expected}"
                )
            results = measure(peer.name, server, peer.path, peer.body, {}, 1, clients, seconds)
            assert server.process is not None
            workers, supervisor = peer_rss_mb(server.process.pid)
            return results, Server(peer.name, 1, start_s, workers, supervisor)
    except Exception as e:  # a peer never stops the benchmark: say why and go on
        peer.skipped = str(e) if isinstance(e, PeerUnavailable) else f"{type(e).__name__}: {e}"
        print(f"  {peer.name:<16} skipped: {peer.skipped}", flush=True)
        return [], None


def batch_metric(name: str) -> str | None:
    """The histogram of requests per model call a server exports, if it batches."""
    if name.startswith("slipway"):
        return "slipway_model_batch_requests"
    if name.startswith("bentoml"):
        return "bentoml_service_adaptive_batch_size"  # BentoML's dispatcher, same meaning
    return None


def batch_counts(
    server: ServerProcess, headers: dict[str, str], metric: str = "slipway_model_batch_requests"
) -> tuple[float, float]:
    """(model calls, requests they answered) so far, from the server's /metrics."""
    text = httpx.get(server.url + "/metrics", headers=headers, timeout=10).text

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M))

    return total(f"{metric}_count"), total(f"{metric}_sum")


def measure(
    name: str,
    server: ServerProcess,
    path: str,
    body: str,
    headers: dict[str, str],
    workers: int,
    clients: list[int],
    seconds: int,
    rows: int = 1,
) -> list[Result]:
    results = []
    metric = batch_metric(name)
    for c in clients:
        warm = wrk(server.url + path, body, headers, c, 2)  # warm-up, not in the table
        before = batch_counts(server, headers, metric) if metric else None
        r = wrk(server.url + path, body, headers, c, seconds)
        if metric and before is not None and workers == 1:  # N workers: /metrics merges them
            after = batch_counts(server, headers, metric)
            r.batch = (after[1] - before[1]) / max(after[0] - before[0], 1)
        r.server, r.workers, r.warmup, r.rows = name, workers, warm.responses, rows
        results.append(r)
        print(
            f"  {name:<16} workers={workers} clients={c:<3} rows={rows:<4} {r.rps:8.0f} req/s  "
            f"p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:7.2f} ms",
            flush=True,
        )
    return results


async def exact_client(
    url: str, headers: dict[str, str], row: list[float], n: int, clients: int = 32
) -> tuple[set[str], int, set[object]]:
    """Send ``n`` predictions tagged unit_id=bench-exact from ``clients`` connections; return
    the ids received in 200 answers, the number of other answers and the labels answered (one
    row, so one label: what the peers must answer too)."""
    body = {"features": row, "unit_id": "bench-exact"}
    received: set[str] = set()
    labels: set[object] = set()
    failed = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:

        async def one_client(count: int) -> None:
            nonlocal failed
            for _ in range(count):
                r = await client.post(url, json=body)
                if r.status_code == 200:
                    predictions = r.json()["predictions"]
                    received.update(p["prediction_id"] for p in predictions)
                    labels.update(p["label"] for p in predictions)
                else:
                    failed += 1

        await asyncio.gather(*(one_client(n // clients) for _ in range(clients)))
    return received, failed, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8, help="Duration of each measured run.")
    parser.add_argument(
        "--quick", action="store_true", help="2 s runs, one worker, 20 trees: a smoke run."
    )
    parser.add_argument(
        "--console",
        action="store_true",
        help="Also run slipway serve with the web console off, to compare with it on and idle.",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="Also run MLflow's and BentoML's servers on the same model (make bench-peers).",
    )
    parser.add_argument(
        "--mlflow-venv", type=Path, default=REPO / ".venv-mlflow", help="MLflow's virtualenv."
    )
    parser.add_argument(
        "--bentoml-venv", type=Path, default=REPO / ".venv-bentoml", help="BentoML's virtualenv."
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/serve.py needs wrk: apt-get install wrk (or brew install wrk)")
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-"))
    print("training the reference model (GradientBoostingClassifier, 100 trees, 20 features)")
    registry, model_path, row = reference_model(tmp, trees=20 if args.quick else 100)
    token = KeyStore(registry.store).create("bench", "predict")[1]
    body = json.dumps({"features": row})
    names = [f"feature_{i}" for i in range(len(row))]
    record = dict(zip(names, row, strict=True))
    base_env = {
        "OMP_NUM_THREADS": "1",
        "SLIPWAY_HOME": str(tmp / "home"),
        "SLIPWAY_BENCH_MODEL": str(model_path),
    }
    slipway_env = {
        **base_env,
        "SLIPWAY_SERVE_RATE_LIMIT": "1000000",
        "SLIPWAY_SERVE_RATE_BURST": "1000000",
    }
    auth = {"Authorization": f"Bearer {token}"}
    seconds = 2 if args.quick else args.seconds
    exact_requests = 640 if args.quick else EXACT_REQUESTS
    setups = ((1, [1, 32]),) if args.quick else ((1, [1, 32]), (2, [32]))
    variants = [("slipway serve", "true")]
    if args.console:
        variants.append(("slipway -console", "false"))
    peers = peers_for(row, args.mlflow_venv, args.bentoml_venv) if args.peers else []
    slipway_label: object = None
    results: list[Result] = []
    servers: list[Server] = []
    exact: tuple[int, int, int, int] | None = None
    for workers, clients in setups:
        for app, name, path, log in (
            ("raw:app", "raw ASGI echo", "/echo", False),
            ("echo:app", "echo (ceiling)", "/echo", False),
            ("naive:app", "naive FastAPI", "/predict", True),
        ):
            with uvicorn(app, workers, base_env, access_log=log) as (server, start_s):
                results += measure(name, server, path, body, {}, workers, clients, seconds)
                assert server.process is not None
                servers.append(
                    Server(name, workers, start_s, worker_rss_mb(server.process.pid, workers))
                )
        for label, console in variants:
            server = ServerProcess(
                ["--workers", str(workers)],
                env={**slipway_env, "SLIPWAY_SERVE_CONSOLE": console},
                log_dir=tmp / f"slipway-{workers}-{console}",
                poll_seconds=0.01,
            )
            with server:
                assert server.ready_after is not None and server.process is not None
                results += measure(label, server, PREDICT, body, auth, workers, clients, seconds)
                if workers == 1 and label == "slipway serve":
                    for n in ROW_SIZES[:1] if args.quick else ROW_SIZES:
                        many = json.dumps({"instances": [record] * n})
                        results += measure(
                            label, server, PREDICT, many, auth, 1, [32], seconds, rows=n
                        )
                    received, failed, labels = asyncio.run(
                        exact_client(server.url + PREDICT, auth, row, exact_requests)
                    )
                    slipway_label = labels.pop() if len(labels) == 1 else labels
                rss = worker_rss_mb(server.process.pid, workers)
                servers.append(Server(label, workers, server.ready_after, rss))
        if workers == 1:  # stopped (SIGTERM: the log is drained): compare the exact ids
            with registry.store.read() as conn:
                query = sa.select(predictions.c.prediction_id).where(
                    predictions.c.unit_id == "bench-exact"
                )
                logged = set(conn.execute(query).scalars())
            exact = (len(received), failed, len(logged), len(logged ^ received))
            for peer in peers:  # one worker each, the same row, clients and durations
                peer_results, cost = run_peer(
                    peer, tmp, model_path, base_env, clients, seconds, slipway_label
                )
                results += peer_results
                if cost is not None:
                    servers.append(cost)
    with registry.store.read() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(predictions)).scalar_one()
    report(results, servers, exact, total, time.perf_counter() - started, peers)
    registry.store.dispose()
    shutil.rmtree(tmp, ignore_errors=True)


def report_peers(results: list[Result], peers: list[Peer]) -> None:
    """Slipway's ratio to each peer at the same clients (one worker each, single rows)."""
    if not peers:
        return
    ours = {r.clients: r for r in results
            if r.server == "slipway serve" and r.workers == 1 and r.rows == 1}  # fmt: skip
    print(
        "\npeers: one worker each, single rows, the same row and load; slipway x = slipway "
        "serve's req/s over the peer's"
    )
    header = (
        f"{'server':<16} {'version':>8} {'clients':>7} {'req/s':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'errors':>6} {'slipway x':>9} {'slipway p50/p99 ms':>19}"
    )
    print(header)
    print("-" * len(header))
    for peer in peers:
        if peer.skipped:
            print(f"{peer.name:<16} {peer.version or '-':>8} skipped: {peer.skipped}")
            continue
        for r in results:
            if r.server != peer.name:
                continue
            s = ours.get(r.clients)
            times = f"{s.rps / r.rps:8.1f}x" if s and r.rps else ""
            latency = f"{s.p50_ms:.2f} / {s.p99_ms:.2f}" if s else ""
            print(
                f"{r.server:<16} {peer.version:>8} {r.clients:>7} {r.rps:>8.0f} {r.p50_ms:>8.2f} "
                f"{r.p99_ms:>8.2f} {r.errors:>6} {times:>9} {latency:>19}"
            )
    print(
        "peers answer labels only (MLflow's pyfunc predict, BentoML's batchable predict); "
        "slipway serve answers labels, probabilities and prediction ids and logs every row"
    )


def report(
    results: list[Result],
    servers: list[Server],
    exact: tuple[int, int, int, int] | None,
    logged: int,
    elapsed: float,
    peers: list[Peer],
) -> None:
    by = {(r.server, r.workers, r.clients): r for r in results if r.rows == 1}
    print()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    header = (
        f"{'server':<16} {'workers':>7} {'clients':>7} {'req/s':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'errors':>6} {'x naive':>8} {'% echo':>7} {'% raw':>6} {'batch':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        if r.rows != 1:
            continue
        naive = by.get(("naive FastAPI", r.workers, r.clients))
        echo = by.get(("echo (ceiling)", r.workers, r.clients))
        x_naive = f"{r.rps / naive.rps:8.1f}" if naive else ""
        of_echo = f"{100 * r.rps / echo.rps:6.0f}%" if echo else ""
        raw = by.get(("raw ASGI echo", r.workers, r.clients))
        of_raw = f"{100 * r.rps / raw.rps:5.0f}%" if raw else ""
        batch = f"{r.batch:6.1f}" if r.batch is not None else ""
        print(
            f"{r.server:<16} {r.workers:>7} {r.clients:>7} {r.rps:>8.0f} {r.p50_ms:>8.2f} "
            f"{r.p99_ms:>8.2f} {r.errors:>6} {x_naive:>8} {of_echo:>7} {of_raw:>6} {batch:>6}"
        )
    s1, e1 = by[("slipway serve", 1, 1)], by[("echo (ceiling)", 1, 1)]
    print(
        f"\np50 at 1 client: slipway {s1.p50_ms:.2f} ms vs echo {e1.p50_ms:.2f} ms "
        f"(+{s1.p50_ms - e1.p50_ms:.2f} ms)"
    )
    print("batch: mean requests per model call (micro-batching; BentoML: adaptive batching)")
    for (server, workers, clients), r in sorted(by.items()):
        off = by.get(("slipway -console", workers, clients))
        if server == "slipway serve" and off is not None:
            print(
                f"console on (idle) vs off, {workers} worker(s), {clients} client(s): "
                f"{r.rps:.0f} vs {off.rps:.0f} req/s ({r.rps / off.rps:.3f}x), "
                f"p99 {r.p99_ms:.2f} vs {off.p99_ms:.2f} ms"
            )

    print(f"\nrows per request (slipway serve, 1 worker, 32 clients)\n{'rows':>5} {'req/s':>8} "
          f"{'rows/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")  # fmt: skip
    for r in results:
        if r.server == "slipway serve" and r.workers == 1 and r.clients == 32:
            print(
                f"{r.rows:>5} {r.rps:>8.0f} {r.rps * r.rows:>9.0f} {r.p50_ms:>8.2f} "
                f"{r.p99_ms:>8.2f} {r.errors:>6}"
            )

    report_peers(results, peers)

    print(f"\n{'server':<16} {'workers':>7} {'cold start s':>13} {'RSS per worker MB':>18}")
    for s in servers:
        mb = ", ".join(f"{m:.0f}" for m in s.rss_mb)
        parent = f"  (+ {s.supervisor_mb:.0f} MB parent)" if s.supervisor_mb is not None else ""
        print(f"{s.name:<16} {s.workers:>7} {s.start_s:>13.2f} {mb:>18}{parent}")
    print(
        "cold start: process start -> ready (slipway: /ready answers 200; baselines: /docs; "
        "mlflow: /ping; bentoml: /readyz)"
    )
    if any(s.supervisor_mb is not None for s in servers):
        print(
            "parent: the process that supervises a peer's worker (the mlflow CLI that execs "
            "uvicorn; BentoML's arbiter)"
        )

    ours = [r for r in results if r.server == "slipway serve"]
    answered = sum((r.responses + r.warmup) * r.rows for r in ours)
    cut = sum(2 * r.clients * r.rows for r in ours)
    if exact is not None:
        received, failed, in_log, mismatched = exact
        verdict = "OK" if mismatched == 0 and failed == 0 else "MISMATCH"
        print(
            f"\nnothing lost: {received} predictions received by a checking client (32 "
            f"connections), {in_log} rows with their ids in the log after SIGTERM, "
            f"{mismatched} differing, {failed} errors: {verdict}"
        )
    print(
        f"prediction log: {logged} rows in all; wrk counted {answered} predicted rows plus "
        f"{exact[0] if exact else 0} checked (wrk stops counting at its deadline; up to "
        f"{cut} more rows can be answered after that)"
    )
    print(f"bench finished in {elapsed:.0f} s")


if __name__ == "__main__":
    main()
