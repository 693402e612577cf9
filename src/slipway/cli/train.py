"""`slipway train` and `slipway quickstart`: train, register, show the model card."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.status import Status

from slipway import quickstart
from slipway.cli import _render
from slipway.cli._common import console, registry, warnings_printed
from slipway.monitoring.terminal import render_terminal
from slipway.registry import Registry
from slipway.train import train


def _lifecycle_step(reg: Registry, workdir: Path) -> None:
    """7. The lifecycle loop on a loan model of its own (see slipway.lifecycle.demo)."""
    from slipway.lifecycle.demo import lifecycle_demo

    console.print(
        "7. the lifecycle: a loan model whose outcomes arrive 14 days late, drifting after day 40"
    )
    with console.status("training, serving 40 days of applications, monitoring, retraining…"):
        demo = lifecycle_demo(
            reg, workdir, on_step=lambda s: console.print(f"   {s}", soft_wrap=True)
        )
    latest = demo.report.latest.estimation.get("metrics", {}).get("accuracy")
    if latest is not None:
        console.print(
            f"   estimated accuracy of the latest 5 days (no outcome yet): {latest['value']:.3f} "
            f"(95% band {latest['low']:.3f}-{latest['high']:.3f}) vs {latest['reference']:.3f} on "
            f"validation; first alert from the estimate: the window starting {demo.first_drop}",
            soft_wrap=True,
        )
    console.print(
        f"   monitoring {demo.report.status}; the HTML report is {workdir}/loans-monitoring.html",
        soft_wrap=True,
    )
    result = demo.retrained
    if result.check is not None:
        console.print(result.check)
    console.print(f"   {result.outcome}: {result.message}", soft_wrap=True)
    console.print(f"   production is still {demo.champion}; `slipway models audit loans` shows why")


def train_command(
    config: Annotated[Path, typer.Argument(help="A TOML train config.", dir_okay=False)],
) -> None:
    """Train a pipeline from a config file, register it, and show its model card.

    Every problem with the config is reported before training starts; each step is shown
    with the time it took.
    """
    with console.status("starting…") as status, warnings_printed():
        steps = _Steps(status)
        mv = train(config, registry(), progress=steps)
        steps.finish()
    console.print(_render.model_card(mv))


class _Steps:
    """Shows the running step by the spinner and each finished one with its duration."""

    def __init__(self, status: Status) -> None:
        self.status = status
        self.step: str | None = None
        self.started = time.perf_counter()

    def __call__(self, step: str) -> None:
        self.finish()
        self.step, self.started = step, time.perf_counter()
        self.status.update(f"{step}…")

    def finish(self) -> None:
        if self.step is not None:
            took = time.perf_counter() - self.started
            console.print(f"{self.step} [dim]({took:.1f}s)[/]", soft_wrap=True)
            self.step = None


def quickstart_command(
    workdir: Annotated[Path, typer.Option(help="Where the generated data and config go.")] = Path(
        "quickstart"
    ),
    rows: Annotated[int, typer.Option(help="Transactions to generate.", min=1000)] = 20_000,
) -> None:
    """The main job: generate transactions, train a fraud model, register, promote and serve it."""
    reg = registry()
    started = time.perf_counter()
    console.rule("[bold]Slipway quickstart")
    console.print(f"1. generating {rows:,} card transactions and a train config in {workdir}/")
    config = quickstart.prepare(workdir, rows)
    console.print(f"2. training and registering (slipway train {config})")
    with console.status("training…"):
        mv = train(config, reg)
    console.print(f"3. registered {mv.ref}; aliases: {', '.join(mv.aliases) or '-'}")
    console.print(_render.model_card(mv))
    console.print("4. serving it over HTTP")
    demo = quickstart.serve_and_call(
        reg, workdir, on_step=lambda s: console.print(f"   {s}", soft_wrap=True)
    )
    console.print(_render.served_predictions(demo))
    fb, again = json.dumps(demo.feedback), json.dumps(demo.feedback_again)
    console.print(f"   POST /v1/feedback (the true labels)  -> {fb}", soft_wrap=True)
    console.print(f"   the same feedback again (idempotent) -> {again}", soft_wrap=True)
    console.print(
        "   stopped the server with SIGTERM (in-flight requests finish, the log is flushed): "
        f"{demo.logged} of {len(demo.rows)} predictions are in the prediction log; "
        "the temporary key is revoked",
        soft_wrap=True,
    )
    console.print(
        f"   {demo.traffic:,} more predictions with their labels went through the same path",
        soft_wrap=True,
    )
    console.print(
        f"5. batch-scoring recent transactions into the database (slipway batch fraud@production "
        f"{workdir}/recent.parquet --key-column transaction_id --output db)",
        soft_wrap=True,
    )
    with console.status("scoring…"):
        run, stored = quickstart.batch_demo(reg, workdir)
    seconds = ((run.ended_at or run.started_at) - run.started_at).total_seconds()
    console.print(
        f"   run {run.run_id}: {run.rows_scored:,} rows scored, {run.rows_rejected} rejected "
        f"in {seconds:.2f}s; GET /v1/models/fraud/predictions/{stored.key} -> "
        f"label {stored.label}, p(fraud) {stored.probabilities['1']:.3f}",
        soft_wrap=True,
    )
    console.print("6. monitoring the served traffic (slipway monitor fraud --since 1h)")
    report = quickstart.monitor_demo(reg, workdir)
    console.print(render_terminal(report))
    console.print(f"   the HTML report is {workdir}/monitoring.html", soft_wrap=True)
    _lifecycle_step(reg, workdir)
    console.print(f"done in {time.perf_counter() - started:.1f}s. Next:")
    console.print("  slipway models list")
    console.print(f"  slipway models show {mv.name}@production")
    console.print(f"  slipway models verify {mv.name}")
    console.print("  export SLIPWAY_KEY=$(slipway keys create --name me --role predict)")
    console.print("  slipway serve          # then open http://127.0.0.1:8000/docs")
    console.print("  " + demo.curl(), soft_wrap=True)
    console.print("  slipway batch runs list")
    console.print("  slipway monitor fraud --since 24h --format html --out report.html")
