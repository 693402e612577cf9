"""`slipway train` and `slipway quickstart`: train, register, show the model card."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.status import Status

from slipway import quickstart
from slipway.cli import _render
from slipway.cli import features as features_cli
from slipway.cli._common import console, registry, warnings_printed


def train_command(
    config: Annotated[Path, typer.Argument(help="A TOML train config.", dir_okay=False)],
) -> None:
    """Train a pipeline from a config file, register it, and show its model card.

    Every problem with the config is reported before training starts; each step is shown
    with the time it took.
    """
    with console.status("starting…") as status, warnings_printed():
        steps = _Steps(status)
        from slipway.train import train  # scikit-learn's training side, for this command only

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
    workdir: Annotated[
        Path, typer.Option(help="Where the generated data, configs and reports go.")
    ] = Path("quickstart-output"),  # the repository's .gitignore leaves it out
    rows: Annotated[int, typer.Option(help="Transactions to generate.", min=1000)] = 20_000,
) -> None:
    """The main job: transactions and features, train a fraud model, serve, audit, monitor."""
    started = time.perf_counter()
    qs = quickstart.Quickstart(
        registry(), workdir, rows=rows, say=lambda s: console.print(s, soft_wrap=True)
    )
    console.rule("[bold]Slipway quickstart")
    for number, step in enumerate(quickstart.STEPS, start=1):
        title, show = STEP_TEXT.get(step, (step.__doc__ or step.__name__, None))
        console.print(f"{number}. {title.format(workdir=workdir, rows=rows)}", soft_wrap=True)
        with console.status("working…"):
            step(qs)
        if show is not None:
            show(qs)
    mv = qs.version
    name = "fraud" if mv is None else mv.name
    console.print(f"done in {time.perf_counter() - started:.1f}s. Next:")
    console.print("  slipway models list")
    console.print(f"  slipway models show {name}@production")
    console.print(f"  slipway features audit {name} --since 1d")
    console.print("  export SLIPWAY_KEY=$(slipway keys create --name me --role predict)")
    console.print(f"  slipway serve          # with {workdir}/ on PYTHONPATH for features.py")
    if qs.demo is not None:
        console.print("  " + qs.demo.curl(), soft_wrap=True)
    console.print("  slipway batch runs list")
    console.print(f"  slipway monitor {name} --since 24h --format html --out report.html")


def _show_trained(qs: quickstart.Quickstart) -> None:
    assert qs.version is not None
    mv = qs.version
    feats = mv.meta["features"]
    console.print(
        f"   registered {mv.ref} with features {', '.join(feats['names'])} (code hash "
        f"{feats['hash'][:12]}); aliases: {', '.join(mv.aliases) or '-'}",
        soft_wrap=True,
    )
    console.print(_render.model_card(mv))


def _show_served(qs: quickstart.Quickstart) -> None:
    demo = qs.demo
    assert demo is not None
    console.print(_render.served_predictions(demo))
    fb, again = json.dumps(demo.feedback), json.dumps(demo.feedback_again)
    console.print(f"   POST /v1/feedback (the true labels)  -> {fb}", soft_wrap=True)
    console.print(f"   the same feedback again (idempotent) -> {again}", soft_wrap=True)
    console.print(
        "   stopped the server with SIGTERM (in-flight requests finish, the log is flushed): "
        f"{demo.logged} of {len(demo.rows)} predictions are in the prediction log, with the "
        "features serving computed; the temporary key is revoked",
        soft_wrap=True,
    )
    console.print(
        f"   {demo.traffic:,} more predictions with their labels went through the same path, "
        "each transaction recorded as an event of its card",
        soft_wrap=True,
    )


def _show_audit(qs: quickstart.Quickstart) -> None:
    assert qs.audit is not None
    console.print(features_cli.render(qs.audit))


def _show_batch(qs: quickstart.Quickstart) -> None:
    assert qs.batch is not None
    run, stored = qs.batch
    seconds = ((run.ended_at or run.started_at) - run.started_at).total_seconds()
    console.print(
        f"   run {run.run_id}: {run.rows_scored:,} rows scored, {run.rows_rejected} rejected "
        f"in {seconds:.2f}s; GET /v1/models/fraud/predictions/{stored.key} -> "
        f"label {stored.label}, p(fraud) {stored.probabilities['1']:.3f}",
        soft_wrap=True,
    )


def _show_monitor(qs: quickstart.Quickstart) -> None:
    assert qs.report is not None
    from slipway.monitoring.terminal import render_terminal

    console.print(render_terminal(qs.report))
    console.print(f"   the HTML report is {qs.workdir}/monitoring.html", soft_wrap=True)


def _show_skew(qs: quickstart.Quickstart) -> None:
    refused = qs.skew.get("refused") or "(not refused)"
    console.print(f"   loading fraud@production now: {refused}", soft_wrap=True)
    report = qs.skew.get("audit")
    if report is not None:
        console.print(
            "   a server started with SLIPWAY_FEATURE_SKEW=warn served it anyway; the audit "
            f"(exit {report.exit_code}):",
            soft_wrap=True,
        )
        console.print(features_cli.render(report))
    console.print(f"   {qs.workdir}/features.py is restored", soft_wrap=True)


def _show_experiments(qs: quickstart.Quickstart) -> None:
    from slipway.experiments.render import render_terminal as render_experiment

    tried = qs.experiments
    assert tried is not None
    console.print(render_experiment(tried.shadow.to_dict()))
    console.print(render_experiment(tried.ab.to_dict()))
    console.print(
        "   both experiments are stopped (abandoned): production is unchanged. With real "
        f"traffic, `slipway experiment stop {tried.candidate.name} --promote` moves production "
        "to the candidate.",
        soft_wrap=True,
    )


def _show_lifecycle(qs: quickstart.Quickstart) -> None:
    demo = qs.lifecycle
    assert demo is not None
    latest = demo.report.latest.estimation.get("metrics", {}).get("accuracy")
    if latest is not None:
        console.print(
            f"   estimated accuracy of the latest 5 days (no outcome yet): {latest['value']:.3f} "
            f"(95% band {latest['low']:.3f}-{latest['high']:.3f}) vs {latest['reference']:.3f} on "
            f"validation; first alert from the estimate: the window starting {demo.first_drop}",
            soft_wrap=True,
        )
    console.print(
        f"   monitoring {demo.report.status}; the HTML report is "
        f"{qs.workdir}/loans-monitoring.html",
        soft_wrap=True,
    )
    result = demo.retrained
    if result.check is not None:
        console.print(result.check)
    console.print(f"   {result.outcome}: {result.message}", soft_wrap=True)
    console.print(f"   production is still {demo.champion}; `slipway models audit loans` shows why")


STEP_TEXT: dict[Callable[..., None], tuple[str, Callable[[Any], None] | None]] = {
    quickstart.generate: (
        "generating {rows:,} card transactions and the feature definitions in {workdir}/",
        None,
    ),
    quickstart.train_model: (
        "training on point-in-time features (slipway.features.training_frame) and registering",
        _show_trained,
    ),
    quickstart.serve_and_call: (
        "serving it over HTTP: requests carry only the card, the time and the raw transaction",
        _show_served,
    ),
    quickstart.audit_step: (
        "auditing training/serving skew (slipway features audit fraud --since 1h)",
        _show_audit,
    ),
    quickstart.batch_demo: (
        "batch-scoring live transactions into the database (slipway batch fraud@production "
        "{workdir}/recent.parquet --key-column transaction_id --output db)",
        _show_batch,
    ),
    quickstart.monitor_demo: (
        "monitoring the served traffic (slipway monitor fraud --since 1h)",
        _show_monitor,
    ),
    quickstart.planted_skew: (
        "planting a skew: avg_amount_7d redefined with a 3-day window after training",
        _show_skew,
    ),
    quickstart.experiment_step: (
        "trying a second model: a shadow deployment, then an A/B test, on simulated traffic "
        "and outcomes",
        _show_experiments,
    ),
    quickstart.lifecycle_step: (
        "the lifecycle: a loan model whose outcomes arrive 14 days late, drifting after day 40",
        _show_lifecycle,
    ),
}
