"""Every ```python and ```sh block of README.md and docs/*.md runs, so a doc cannot drift.

The convention (see docs/design.md, "Docs that run"):

- Blocks run in file order, each against its own copy of one fixture home, where
  ``slipway quickstart``'s model ``fraud`` is trained (smaller; the quickstart's job made flat by
  ``quickstart.prepare``), registered three times and promoted, and the quickstart's lifecycle
  step has run (model ``loans``: production, a retrained candidate, served traffic with late
  labels; ``quickstart/loans.toml``), and of a working directory holding
  ``fraud.toml``, ``transactions.csv``, ``transactions.parquet`` (keyed by ``txn_id``), ``data/``
  (CSV parts) and ``big/``; the database also has a ``transactions`` table for ``--query``.
- ``sh`` blocks run in bash with ``SLIPWAY_HOME`` set and a ``slipway`` first on PATH that runs
  the venv's CLI in a process forked from one that imported it already (``tests/fast_cli.py``:
  the same ``slipway.cli.main``, argv, environment, directory and exit code, without 1-3 s of
  imports per command; the venv's own ``slipway`` where fork is missing); every command (a
  line, with its ``\\`` continuations) must exit 0, or a code listed in the info string:
  ```` ```sh exit=0,1,2 ```` (``slipway monitor``'s OK / WARN / ALERT).
- ``python`` blocks run with these names defined, as a notebook would have them: ``slipway``,
  ``np``, ``pd``, ``rich``, ``pipe`` (a fitted pipeline), ``X_train``, ``y_train``, ``X_val``,
  ``y_val``, ``X_new``, ``frame`` (transactions with ``txn_id``), ``X_last_week``,
  ``X_reference``, ``X_current``, ``ref``, ``cur``, ``key`` (a predict API key), ``labels``;
  each block gets its own copy of ``pipe``, so one that refits it leaves the others' alone.
- A ```` ```python file=features.py ```` block is a module of the user's project: besides
  running as a block, it is written into the working directory before any block runs, so later
  blocks import it (``from features import card``) as the user's code would. The home also
  holds the quickstart's card transactions as events of the store source ``transactions``, and
  ``labels`` (those transactions after a 30-day warm-up: ``card_id``, ``ts``, raw fields,
  ``is_fraud``) is defined for python blocks.
- A block that cannot run in a test (a long-lived server, a remote host, ``make``) says so in
  its info string: ```` ```sh no-run ```` or ```` ```python no-run ````.

A failure names the file and line of the block and of the command that failed.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)\s*(.*)$")
RUNNABLE = {"python": "python", "sh": "sh", "bash": "sh", "shell": "sh"}
pytestmark = pytest.mark.xdist_group("docs")  # one worker, one fixture home, file order


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, info words and text."""

    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    info: tuple[str, ...]
    code: str

    @property
    def where(self) -> str:
        """``README.md:17``."""
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def option(self, name: str) -> str | None:
        """The value of ``name=value`` in the info string, if given."""
        for word in self.info:
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
        return None


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file (an unclosed fence is an error naming its line)."""
    out: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, info = m.groups()
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path.relative_to(ROOT)}:{start + 1}: unclosed ``` fence")
        out.append(Block(path, start + 1, lang, tuple(info.split()), "\n".join(body) + "\n"))
        i += 1
    return out


def doc_blocks() -> list[Block]:
    """Every block of README.md and docs/*.md to run, in file order."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [b for f in files for b in blocks(f) if b.lang in RUNNABLE and "no-run" not in b.info]


BLOCKS = doc_blocks()
MODULES = [b for b in BLOCKS if b.lang == "python" and b.option("file")]


@pytest.fixture(scope="session")
def docs_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A home where the quickstart's ``fraud`` is registered (3 versions, production on 3),
    a working directory with the files the docs name, and the notebook names."""
    import numpy as np
    import pandas as pd

    from slipway import quickstart
    from slipway.config import Settings
    from slipway.keys import KeyStore
    from slipway.lifecycle.demo import lifecycle_demo
    from slipway.registry import Registry
    from slipway.train import train

    base = tmp_path_factory.mktemp("docs")
    home, work = base / "home", base / "work"
    settings = Settings(home=home, user="docs")
    registry = Registry(settings)
    config = quickstart.prepare(work, rows=1_500)
    # The same job as the quickstart's, made small: the docs' `slipway train` runs it again.
    text = config.read_text().replace("n_estimators = 100", "n_estimators = 20")
    config.write_text(text.replace("cv = 3", "cv = 2"))
    first = train(config, registry)
    pipe = registry.load(first.ref).pipeline
    data = pd.read_csv(work / "transactions.csv")
    features = list(quickstart.FEATURES)
    X, y = data[features], data["is_fraud"].to_numpy()
    cut = int(len(X) * 0.75)
    for _ in range(2):
        mv = registry.register(pipe, "fraud", X.iloc[:cut], y[:cut], X_val=X.iloc[cut:],
                               y_val=y[cut:], onnx=False)  # fmt: skip
    registry.promote("fraud", mv.version, alias="production")
    frame = X.assign(txn_id=[f"t{i:05d}" for i in range(len(X))])
    frame.to_parquet(work / "transactions.parquet", index=False)
    (work / "data").mkdir()
    (work / "big").mkdir()
    for day, part in ((1, frame.iloc[:500]), (2, frame.iloc[500:1000])):
        part.to_csv(work / "data" / f"2026-11-{day:02d}.csv", index=False)
    frame.to_parquet(work / "big" / "part-0.parquet", index=False)
    table = frame.assign(day=np.where(np.arange(len(frame)) % 2, "2026-11-05", "2026-11-04"))
    with registry.store.engine.begin() as conn:
        table.to_sql("transactions", conn, index=False)
    key = KeyStore(registry.store).create("docs", "predict")[1]
    # docs/features.md's worked example: the card transactions as events in the store, the
    # later ones as labelled rows, and the project's modules the docs define (features.py)
    import slipway.features as sf
    from slipway.features.ingest import ingest

    history = quickstart.make_history(1_500)
    source = sf.EventSource("transactions", entity="card_id", timestamp="ts", id="transaction_id")
    ingest(registry.store, history.drop(columns="is_fraud"), source)
    start = pd.Timestamp(quickstart.START) + pd.Timedelta(days=quickstart.WARM_UP)
    labels = history[history.ts >= start].reset_index(drop=True)
    for module in MODULES:
        (work / str(module.option("file"))).write_text(module.code)
    # the quickstart's lifecycle step: `loans` with served, partly labeled traffic, a retrained
    # candidate, and quickstart-output/loans.toml (the default --workdir)
    lifecycle_demo(registry, work / "quickstart-output")
    registry.store.dispose()
    shifted = X.iloc[cut:].assign(amount=X.iloc[cut:]["amount"] * 1.5)
    names = {
        "np": np,
        "pd": pd,
        "pipe": pipe,
        "X_train": X.iloc[:cut],
        "y_train": y[:cut],
        "X_val": X.iloc[cut:],
        "y_val": y[cut:],
        "X_new": X.iloc[cut : cut + 5],
        "frame": frame,
        "X_last_week": shifted,
        "X_reference": X.iloc[:cut],
        "X_current": shifted,
        "ref": X.iloc[:cut],
        "cur": shifted,
        "key": key,
        "labels": labels,
    }
    env = {
        "SLIPWAY_HOME": str(home),
        "SLIPWAY_USER": "docs",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "120",
    }
    return {"work": work, "env": env, "names": names}


@pytest.fixture(scope="session")
def docs_path(docs_home: dict[str, Any], slipway_command: str) -> str:
    """PATH for the shell blocks: the fast ``slipway`` of :mod:`tests.fast_cli` first."""
    return f"{Path(slipway_command).parent}{os.pathsep}{docs_home['env']['PATH']}"


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_doc_block_runs(
    block: Block, docs_home: dict[str, Any], docs_path: str, monkeypatch, tmp_path
) -> None:
    """The block runs as written against the fixture home (see the module docstring)."""
    # Each block gets its own copy of the home and the working directory: what one block
    # creates (a key, a run, a file) never clashes with another's.
    work, home = tmp_path / "work", tmp_path / "home"
    shutil.copytree(docs_home["work"], work)
    shutil.copytree(docs_home["env"]["SLIPWAY_HOME"], home)
    env = {**docs_home["env"], "SLIPWAY_HOME": str(home)}
    monkeypatch.chdir(work)
    monkeypatch.delenv("SLIPWAY_DATABASE_URL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if RUNNABLE[block.lang] == "python":
        # the project's modules import from the working directory, never from an earlier copy
        monkeypatch.syspath_prepend(str(work))
        for module in MODULES:
            monkeypatch.delitem(sys.modules, Path(str(module.option("file"))).stem, raising=False)
        names = {**docs_home["names"], "pipe": copy.deepcopy(docs_home["names"]["pipe"])}
        run_python(block, names)
    else:
        run_shell(block, {**env, "PATH": docs_path}, work)


def run_python(block: Block, names: dict[str, Any]) -> None:
    """Exec the block; tracebacks point at the Markdown file's own line numbers."""
    import rich

    import slipway

    namespace = {"__name__": "__docs__", "slipway": slipway, "rich": rich, **names}
    code = compile("\n" * block.line + block.code, str(block.path), "exec")
    try:
        exec(code, namespace)
    except Exception as exc:
        raise AssertionError(f"{block.where}: the ```python block raised {exc!r}") from exc


def commands(block: Block) -> list[tuple[int, str]]:
    """(file line, command) for each command: lines joined at trailing backslashes."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    first = 0
    for offset, line in enumerate(block.code.splitlines(), start=block.line + 1):
        if not pending:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            first = offset
        pending.append(line)
        if not line.endswith("\\"):
            out.append((first, "\n".join(pending)))
            pending = []
    if pending:
        out.append((first, "\n".join(pending)))
    return out


def run_shell(block: Block, env: dict[str, str], cwd: Path) -> None:
    """Run the block's commands in one bash, checking each one's exit code."""
    accepted = (block.option("exit") or "0").split(",")
    script = ["set -u"]
    for line, command in commands(block):
        script.append(command)
        script.append(
            f'rc=$?; case " {" ".join(accepted)} " in *" $rc "*) ;; '
            f'*) echo "SLIPWAY-DOCS-FAILED {line} $rc" >&2; exit 97;; esac'
        )
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode == 0:
        return
    failed = re.search(r"SLIPWAY-DOCS-FAILED (\d+) (\d+)", done.stderr)
    where = (
        f"{block.path.relative_to(ROOT)}:{failed[1]}: the command exited {failed[2]}"
        if failed
        else f"{block.where}: the ```sh block exited {done.returncode}"
    )
    raise AssertionError(
        f"{where} (accepted: {', '.join(accepted)})\n--- stdout ---\n{done.stdout[-3000:]}"
        f"\n--- stderr ---\n{done.stderr[-3000:]}"
    )


def test_the_runner_reads_fences_info_strings_and_continuations(tmp_path):
    """no-run blocks are skipped, exit= is read, and continuation lines are one command."""
    doc = tmp_path / "x.md"
    doc.write_text(
        "text\n```sh exit=0,1\nslipway a \\\n  --b\n# note\nslipway c\n```\n"
        "```sh no-run\nslipway serve\n```\n```python\nx = 1\n```\n"
    )
    found = blocks(doc)
    assert [(b.line, b.lang, b.info) for b in found] == [
        (2, "sh", ("exit=0,1",)),
        (8, "sh", ("no-run",)),
        (11, "python", ()),
    ]
    assert found[0].option("exit") == "0,1"
    assert commands(found[0]) == [(3, "slipway a \\\n  --b"), (6, "slipway c")]


def test_module_blocks_are_written_into_the_working_directory(docs_home):
    """A ```python file=NAME block's code is the file NAME that later blocks import."""
    assert MODULES, "docs/features.md defines features.py in a file= block"
    for module in MODULES:
        assert (docs_home["work"] / str(module.option("file"))).read_text() == module.code


def test_the_fast_slipway_answers_as_the_installed_one(docs_home, docs_path, tmp_path):
    """The shell blocks' ``slipway`` gives the venv's own output, errors and exit codes, with
    the caller's environment (``SLIPWAY_HOME``) and working directory."""
    real = shutil.which("slipway", path=docs_home["env"]["PATH"])
    fast = shutil.which("slipway", path=docs_path)
    assert real and fast
    if hasattr(os, "fork"):  # else the fixture gives the venv's own
        assert fast != real, "the docs' fast slipway is not first on PATH"
    home = tmp_path / "home"
    shutil.copytree(docs_home["env"]["SLIPWAY_HOME"], home)
    env = {**os.environ, **docs_home["env"], "SLIPWAY_HOME": str(home)}
    env.pop("SLIPWAY_DATABASE_URL", None)
    answers = {}
    for args in (
        ("--version",),
        ("models", "list", "--json"),  # the home the environment names
        ("models", "show", "nope"),  # exit 1, the error on stderr
        ("nonsense",),  # exit 2, usage on stderr
        ("train", "missing.toml"),  # a path relative to the working directory
    ):
        run = dict(cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        want, got = (subprocess.run([cmd, *args], check=False, **run) for cmd in (real, fast))
        assert (got.returncode, got.stdout, got.stderr) == (
            want.returncode,
            want.stdout,
            want.stderr,
        ), args
        answers[args] = got
    assert '"fraud"' in answers[("models", "list", "--json")].stdout
    codes = [a.returncode for a in answers.values()]
    assert codes[:4] == [0, 0, 1, 2] and codes[4] != 0
