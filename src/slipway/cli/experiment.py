"""`slipway experiment ...`: start, watch, report on and stop shadow deployments and A/B tests."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from slipway.cli._common import JsonOption, console, err_console, print_json, registry
from slipway.experiments import ExperimentDesk, ExperimentReport, Guardrails
from slipway.experiments.render import headline, render_terminal

app = typer.Typer(
    help="Shadow deployments and A/B tests of a candidate version, ending in a verdict.",
    no_args_is_help=True,
)

Ref = Annotated[str, typer.Argument(help="A model (its running or latest experiment) or an id.")]


class ModeChoice(StrEnum):
    """How the candidate meets traffic."""

    shadow = "shadow"
    ab = "ab"


class MetricChoice(StrEnum):
    """What decides."""

    accuracy = "accuracy"
    error_rate = "error_rate"
    mae = "mae"
    conversion = "conversion"
    value = "value"


class Format(StrEnum):
    """How a report is printed."""

    table = "table"
    json = "json"
    html = "html"


def _desk() -> ExperimentDesk:
    from slipway.monitoring.sinks import alerter

    reg = registry()
    return ExperimentDesk(reg, alert=alerter(reg.settings))


@app.command("start")
def start(
    model: Annotated[str, typer.Argument(help="The model; production is the control.")],
    mode: Annotated[ModeChoice, typer.Option(help="shadow or ab.")],
    candidate: Annotated[int, typer.Option(help="The version to try.", min=1)],
    split: Annotated[
        float | None, typer.Option(help="A/B: share of units the candidate answers, e.g. 0.1.")
    ] = None,
    metric: Annotated[
        MetricChoice | None,
        typer.Option(help="What decides (default accuracy, or mae for regressors)."),
    ] = None,
    outcome: Annotated[
        str | None, typer.Option(help="The business outcome for --metric conversion or value.")
    ] = None,
    unit_field: Annotated[
        str | None, typer.Option(help="Input field naming the unit (default: the body's unit_id).")
    ] = None,
    min_effect: Annotated[
        float | None, typer.Option(help="Smallest difference worth finding, in metric units.")
    ] = None,
    alpha: Annotated[float, typer.Option(help="False-positive rate of the tests.")] = 0.05,
    power: Annotated[float, typer.Option(help="Power the sample size is planned for.")] = 0.8,
    min_outcomes: Annotated[
        int, typer.Option(help="Observations per arm before any verdict.", min=1)
    ] = 100,
    guardrail: Annotated[
        list[str] | None,
        typer.Option(help="NAME=VALUE bound, e.g. max_p99_increase_ms=20 (repeat)."),
    ] = None,
) -> None:
    """Start a shadow deployment or an A/B test; running servers pick it up within seconds."""
    experiment = _desk().start(
        model,
        mode=mode.value,
        candidate=candidate,
        split=split,
        metric_name=None if metric is None else metric.value,
        outcome=outcome,
        unit_field=unit_field,
        min_effect=min_effect,
        alpha=alpha,
        power=power,
        min_outcomes=min_outcomes,
        guardrails=Guardrails.parse(guardrail),
    )
    console.print(f"started {headline({'experiment': experiment.to_dict()})}", soft_wrap=True)
    err_console.print(
        f"watch it: slipway experiment status {model}; end it: slipway experiment stop {model} "
        "--promote (or --abandon)"
    )


@app.command("status")
def status(ref: Ref, as_json: bool = JsonOption) -> None:
    """Live: traffic per arm, agreement, guardrails and the verdict so far."""
    report = _desk().report(ref, rescore=2000)
    _print(report, Format.json if as_json else Format.table, None)


@app.command("report")
def report(
    ref: Ref,
    fmt: Annotated[Format, typer.Option("--format", help="table, json or html.")] = Format.table,
    out: Annotated[Path | None, typer.Option(help="Write the report to this file.")] = None,
) -> None:
    """The whole report, ending in the verdict and the numbers behind it."""
    _print(_desk().report(ref), fmt, out)


@app.command("stop")
def stop(
    ref: Ref,
    promote: Annotated[
        bool, typer.Option("--promote", help="Move production to the candidate (audited).")
    ] = False,
    abandon: Annotated[bool, typer.Option("--abandon", help="Keep production as it is.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Promote even when the verdict is candidate worse.")
    ] = False,
) -> None:
    """End the running experiment: --promote the candidate or --abandon it."""
    if promote == abandon:
        raise typer.BadParameter("give exactly one of --promote and --abandon")
    experiment, final = _desk().stop(ref, promote=promote, force=force)
    console.print(render_terminal(final.to_dict()))
    what = (
        f"promoted {experiment.model}:{experiment.candidate_version} to production"
        if promote
        else f"abandoned; production stays {experiment.model}:{experiment.control_version}"
    )
    console.print(f"experiment {experiment.id} stopped: {what}", soft_wrap=True)


@app.command("ramp")
def ramp(
    ref: Ref,
    split: Annotated[float, typer.Option(help="The new, larger share of the candidate.")],
) -> None:
    """Raise a running A/B test's split; the analysis starts a new phase."""
    experiment = _desk().ramp(ref, split)
    console.print(f"{experiment.id}: split now {experiment.split:.0%} (a new phase starts now)")


@app.command("list")
def list_experiments(
    model: Annotated[str | None, typer.Argument(help="Only this model's.")] = None,
    as_json: bool = JsonOption,
) -> None:
    """Experiments, newest first."""
    found = _desk().experiments(model)
    if as_json:
        print_json([e.to_dict() for e in found])
        return
    if not found:
        console.print("No experiments yet. Start one: slipway experiment start MODEL --mode ...")
        return
    table = Table()
    for column in ("id", "model", "mode", "control", "candidate", "split", "metric", "status"):
        table.add_column(column)
    for e in found:
        state = e.status if e.running else f"{e.decision} {e.stopped_at:%Y-%m-%d %H:%M}"
        table.add_row(
            e.id,
            e.model,
            e.mode,
            str(e.control_version),
            str(e.candidate_version),
            "-" if e.mode == "shadow" else f"{e.split:.0%}",
            e.metric + (f" ({e.outcome})" if e.outcome else ""),
            state,
        )
    console.print(table)


def _print(report: ExperimentReport, fmt: Format, out: Path | None) -> None:
    data = report.to_dict()
    if fmt is Format.json:
        if out is None:
            print_json(data)
            return
        import json

        out.write_text(json.dumps(data, indent=2, default=str) + "\n")
    elif fmt is Format.html:
        page = report.to_html()
        if out is None:
            console.file.write(page + "\n")
            return
        out.write_text(page)
    else:
        if out is None:
            console.print(render_terminal(data))
            return
        from rich.console import Console

        with out.open("w") as f:
            Console(file=f, width=120, highlight=False).print(render_terminal(data))
    err_console.print(f"wrote {out}")
