"""Run the CLI in process and capture what it printed and how it exited."""

from __future__ import annotations

from dataclasses import dataclass

from slipway.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys, *args: str) -> Result:
    """Invoke ``slipway ARGS`` as a user would, returning exit code, stdout and stderr."""
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)
