"""The Dockerfile and docker-compose.yml run commands that exist, as documented.

There is no Docker engine in CI, so these read the files and check what can be checked: the
base image, the user, the health check, and that every command line parses with the real CLI.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import typer
import yaml

from slipway.cli import app

ROOT = Path(__file__).resolve().parents[2]


def parse(args: list[str]) -> dict:
    """The options a `slipway ...` command line sets (click parses it as the CLI would)."""
    group = typer.main.get_command(app)
    name, *rest = args
    command = group.commands[name]  # type: ignore[attr-defined]
    while hasattr(command, "commands"):
        name, *rest = rest
        command = command.commands[name]
    return command.make_context(name, list(rest)).params


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(" ", 1)) for line in lines if line and not line.startswith("#")]


def test_dockerfile_is_slim_non_root_and_health_checked():
    """Slim Python base, an unprivileged user, a HEALTHCHECK on /health, `slipway serve`."""
    steps = instructions()
    images = [args.split()[0] for op, args in steps if op == "FROM"]
    assert images and all(re.fullmatch(r"python:3\.1[1-9]-slim", i) for i in images)
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    (health,) = [args for op, args in steps if op == "HEALTHCHECK"]
    assert "http://127.0.0.1:8000/health" in health
    entry = json.loads(next(args for op, args in steps if op == "ENTRYPOINT"))
    cmd = json.loads(next(args for op, args in steps if op == "CMD"))
    assert entry == ["slipway"]
    params = parse(cmd)
    assert (params["host"], params["port"], params["workers"]) == ("0.0.0.0", 8000, 2)
    assert not params["no_auth"]
    for op, args in steps:
        if op == "COPY" and "--from" not in args:
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), source


def test_dockerfile_installs_an_extra_the_project_has():
    """`pip install slipway[postgres]` names this project and one of its extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installs = [args for op, args in instructions() if op == "RUN" and "pip install" in args]
    assert f'"{project["name"]}[postgres]"' in installs[0]
    assert "postgres" in project["optional-dependencies"]


def test_compose_runs_the_service_on_postgresql():
    """PostgreSQL with a health check; the service waits for it, uses it, binds loopback."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    service = services["slipway"]
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    url = service["environment"]["SLIPWAY_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://") and "@postgres:5432/" in url
    assert all(p.startswith("127.0.0.1:") for p in service["ports"])
    params = parse(service["command"])
    grace = int(service["stop_grace_period"].rstrip("s"))
    assert grace > params["graceful_timeout"]


def test_documented_compose_commands_exist():
    """The commands the compose file and docs/serving.md tell users to run parse."""
    text = (ROOT / "docker-compose.yml").read_text() + (ROOT / "docs" / "serving.md").read_text()
    commands = re.findall(r"docker compose run --rm (?:-T )?slipway ([^\n`)]+)", text)
    assert len(commands) >= 3
    for line in commands:
        parse(line.split("#")[0].split())
