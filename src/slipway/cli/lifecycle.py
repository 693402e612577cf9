"""`slipway check CANDIDATE` (the gate) and `slipway retrain NAME` (train, gate, shadow).

Both exit 0 when the candidate passes, 1 when the gate fails, and 3 when they could not run
(an unknown model, a bad option, config or holdout, an unreachable database), so that a
scheduler never mistakes an error for a failed gate.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer._click.core import Context
from typer._click.exceptions import UsageError
from typer.core import TyperCommand

from slipway.cli._common import (
    console,
    emit,
    print_error,
    print_json,
    registry,
    warnings_printed,
)
from slipway.clock import parse_duration

if TYPE_CHECKING:
    from slipway.lifecycle.retrain import RetrainResult

# The lifecycle (training, the gate's statistics) is imported by the commands that run it, so
# that `slipway serve` (this process is its worker) does not load it; see slipway/_lazy.py.

CANNOT_RUN = 3


class CannotRunCommand(TyperCommand):
    """Usage errors exit with CANNOT_RUN (3), not Click's 2."""

    def make_context(self, *args: Any, **kwargs: Any) -> Context:
        try:
            return super().make_context(*args, **kwargs)
        except UsageError as exc:
            exc.exit_code = CANNOT_RUN
            raise


class CheckFormat(StrEnum):
    """How a gate result is printed."""

    table = "table"
    json = "json"
    html = "html"


class ThenChoice(StrEnum):
    """What happens to a candidate that passes the gate."""

    stop = "stop"
    shadow = "shadow"


class TriggerChoice(StrEnum):
    """Why a retraining runs (recorded in the audit trail)."""

    manual = "manual"
    schedule = "schedule"
    alert = "alert"


PolicyOption = typer.Option(
    "--policy",
    help="TOML gate policy (metrics, tolerances, perturbations, limits).",
    dir_okay=False,
)


def check_command(
    candidate: Annotated[
        str, typer.Argument(help="The version to check: NAME:VERSION or NAME@ALIAS.")
    ],
    against: Annotated[
        str,
        typer.Option(help="The champion: an alias of the same model, a reference, or 'none'."),
    ] = "production",
    data: Annotated[
        Path | None,
        typer.Option(
            help="Holdout .parquet/.csv with the fields and the target; default: the labeled "
            "served traffic of the last 30 days.",
            dir_okay=False,
        ),
    ] = None,
    fmt: Annotated[CheckFormat, typer.Option("--format", help="table, json or html.")] = (
        CheckFormat.table
    ),
    out: Annotated[Path | None, typer.Option(help="Write the result to this file.")] = None,
    policy: Annotated[Path | None, PolicyOption] = None,
) -> None:
    """Gate a candidate against the champion; exit 0 pass, 1 fail, 3 could not run."""
    with _cannot_run():
        from slipway.lifecycle.check import check
        from slipway.lifecycle.policy import load_check_policy

        result = check(
            registry(), candidate, against=against, data=data, policy=load_check_policy(policy)
        )
        emit(result, fmt.value, out, f"{result.status.upper()}: result")
    raise typer.Exit(result.exit_code)


def retrain_command(
    name: Annotated[str, typer.Argument(help="The model to retrain.")],
    config: Annotated[
        Path, typer.Option(help="The train config (slipway train's TOML).", dir_okay=False)
    ],
    since: Annotated[
        str | None, typer.Option(help="Train on the config's rows of the last 90d, 12w, ...")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Train on this file instead of the config's data.")
    ] = None,
    then: Annotated[
        ThenChoice,
        typer.Option(
            help="stop: register and stop; shadow: start a shadow "
            "experiment when the candidate passes."
        ),
    ] = ThenChoice.stop,
    every: Annotated[
        str | None, typer.Option(help="Retrain again at this interval until stopped, e.g. 7d.")
    ] = None,
    count: Annotated[
        int | None, typer.Option(help="With --every: stop after this many runs.", min=1)
    ] = None,
    against: Annotated[str, typer.Option(help="The champion to gate against.")] = "production",
    policy: Annotated[Path | None, PolicyOption] = None,
    trigger: Annotated[
        TriggerChoice | None,
        typer.Option(
            help="Why this runs (default: manual, or schedule with --every).",
            envvar="SLIPWAY_TRIGGER",
        ),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option(
            help="The reason recorded in the audit trail.", envvar="SLIPWAY_TRIGGER_REASON"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Train a new version, gate it against production; exit 0 pass, 1 fail, 3 could not run."""
    with _cannot_run():
        from slipway.lifecycle.policy import load_check_policy
        from slipway.lifecycle.retrain import retrain

        window = parse_duration(since, "--since") if since else None
        interval = parse_duration(every, "--every") if every else None
        gate = load_check_policy(policy)
        why = (trigger.value if trigger else None) or ("schedule" if interval else "manual")
        reg = registry()
        runs = 0
        while True:
            started = time.monotonic()
            runs += 1
            text = reason or (f"every {every} (run {runs})" if interval else "")
            try:
                with warnings_printed():  # the notes about the data, as `slipway train`
                    result = retrain(
                        reg,
                        name,
                        config,
                        since=window,
                        data=data,
                        trigger=why,
                        reason=text,
                        then=then.value,
                        against=against,
                        policy=gate,
                    )
                _print_retrain(result, as_json)
                code = result.exit_code
            except Exception as exc:
                if interval is None:
                    raise
                print_error(exc)  # a schedule outlives one failed run; the audit has it
                code = CANNOT_RUN
            if interval is None or (count is not None and runs >= count):
                break
            time.sleep(max(0.0, interval.total_seconds() - (time.monotonic() - started)))
    raise typer.Exit(code)


def _print_retrain(result: RetrainResult, as_json: bool) -> None:
    if as_json:
        print_json(result.to_dict())
        return
    style = {"passed": "green", "shadow": "green", "check_failed": "bold red"}.get(
        result.outcome, "yellow"
    )
    console.print(
        f"[{style}]{result.outcome}[/] {result.model}"
        + (f":{result.version}" if result.version else "")
        + f" ({result.trigger}: {result.reason}); trained on {result.data.get('rows', 0):,} rows",
        soft_wrap=True,
    )
    if result.check is not None:
        console.print(result.check)
    console.print(result.message, soft_wrap=True)


@contextmanager
def _cannot_run() -> Iterator[None]:
    """Errors exit 3 here: 1 already means the gate failed."""
    try:
        yield
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as exc:  # any failure, known or a crash, must not look like a failed gate
        print_error(exc)
        raise typer.Exit(CANNOT_RUN) from None
