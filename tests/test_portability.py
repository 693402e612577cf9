"""Pipelines with the user's own code: refused at registration unless another process can load
them, their modules recorded, and checked before every load."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import uuid

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from slipway import artifacts as art
from slipway.exceptions import InvalidModel, UnloadableArtifact
from slipway.serving import server
from slipway.serving.process import ServerProcess

MODULE = """
import numpy as np


def log1p_abs(X):
    return np.log1p(np.abs(X))
"""


def data():
    """A small numeric classification problem."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    return X, (X[:, 0] + rng.normal(size=200) > 0).astype(int)


@pytest.fixture
def own_module(tmp_path, monkeypatch):
    """A module of the user's own, importable here (its directory on sys.path) and nowhere
    else; returns (module name, its directory)."""
    name = f"mytransforms_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(folder))
    yield name, folder
    sys.modules.pop(name, None)


def fitted_with(func):
    """A pipeline with ``func`` in a FunctionTransformer, fitted."""
    X, y = data()
    pipe = make_pipeline(FunctionTransformer(func), StandardScaler(), LogisticRegression())
    return pipe.fit(X, y), X, y


def test_a_function_defined_in_main_is_refused_with_the_fix(registry, monkeypatch):
    """A notebook's function lives in __main__: refused before anything is saved, naming it."""

    def local_fn(X):
        return X

    local_fn.__module__, local_fn.__qualname__ = "__main__", "local_fn"
    monkeypatch.setattr(sys.modules["__main__"], "local_fn", local_fn, raising=False)
    pipe, X, y = fitted_with(local_fn)
    with pytest.raises(InvalidModel) as info:
        registry.register(pipe, "nb", X, y)
    message = str(info.value)
    assert "local_fn, defined in __main__" in message
    assert "Can't get attribute 'local_fn' on <module '__main__'>" in message
    assert "Move local_fn into a module file" in message and "PYTHONPATH" in message
    assert registry.models() == []


def test_a_lambda_is_refused_with_the_fix(registry):
    """pickle cannot save a lambda: the error says so and how to fix it, not a PicklingError."""
    pipe, X, y = fitted_with(lambda X: X)
    with pytest.raises(InvalidModel, match="cannot be saved.*define the function at the top"):
        registry.register(pipe, "lam", X, y)


def test_a_module_only_this_process_can_import_is_refused(registry, own_module):
    """The fresh interpreter cannot import the module: refused, naming it and its directory."""
    name, folder = own_module
    func = importlib.import_module(name).log1p_abs
    pipe, X, y = fitted_with(func)
    with pytest.raises(InvalidModel) as info:
        registry.register(pipe, "own", X, y)
    message = str(info.value)
    assert f"No module named '{name}'" in message
    assert f"{name} (log1p_abs)" in message
    assert f"export PYTHONPATH={folder}" in message and "pip install -e ." in message


def test_a_module_on_pythonpath_registers_and_is_recorded(registry, own_module, monkeypatch):
    """With its directory on PYTHONPATH the check passes; the modules and directory are kept."""
    name, folder = own_module
    monkeypatch.setenv("PYTHONPATH", str(folder))
    pipe, X, y = fitted_with(importlib.import_module(name).log1p_abs)
    mv = registry.register(pipe, "own", X, y)
    assert mv.meta["local_modules"] == {name: str(folder)}
    assert name in mv.meta["modules"] and "sklearn.pipeline" in mv.meta["modules"]
    np.testing.assert_array_equal(registry.load(mv.ref).predict(X), pipe.predict(X))


def test_a_missing_module_is_named_before_unpickling(registry, own_module, monkeypatch):
    """Load, verify and serve's start check all say which module is missing and where it was."""
    name, folder = own_module
    monkeypatch.setenv("PYTHONPATH", str(folder))
    pipe, X, y = fitted_with(importlib.import_module(name).log1p_abs)
    mv = registry.register(pipe, "own", X, y, alias="production")
    assert {c.status for c in registry.verify()} == {"ok"}
    monkeypatch.delenv("PYTHONPATH")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(folder)])
    sys.modules.pop(name)
    with pytest.raises(UnloadableArtifact) as info:
        registry.load(mv.ref)
    assert f"own:1 cannot be loaded in this process: it needs {name}" in str(info.value)
    assert f"export PYTHONPATH={folder}" in str(info.value)
    (check,) = [c for c in registry.verify() if c.role == "model"]
    assert check.status == "unloadable" and f"No module named '{name}'" in check.detail
    assert {c.status for c in registry.verify(load=False)} == {"ok"}
    (problem,) = server.missing_code(registry.settings)
    assert problem == str(info.value)


def test_installed_code_needs_no_fresh_interpreter(registry, monkeypatch):
    """A pipeline of installed packages only is not loaded again in a subprocess."""

    def no_subprocess(*args, **kwargs):
        raise AssertionError("a fresh interpreter was started")

    monkeypatch.setattr(art, "FreshLoad", no_subprocess)
    pipe, X, y = fitted_with(np.abs)
    mv = registry.register(pipe, "installed", X, y)
    assert mv.meta["local_modules"] == {}
    assert "numpy" in mv.meta["modules"]


def test_code_of_lists_globals_and_local_modules(own_module):
    """Every class and function stored by reference is listed; only the user's module is local."""
    name, _ = own_module
    pipe, _, _ = fitted_with(importlib.import_module(name).log1p_abs)
    code = art.code_of(pipe)
    assert (name, "log1p_abs") in code.globals
    assert ("sklearn.linear_model._logistic", "LogisticRegression") in code.globals
    assert code.local == (name,) and code.in_main == []


def test_a_legacy_version_that_fails_to_unpickle_says_why(registry, monkeypatch):
    """Versions registered before modules were recorded: the unpickling error is explained."""
    pipe, X, y = fitted_with(np.abs)
    mv = registry.register(pipe, "old", X, y)

    def fails(*args, **kwargs):
        raise AttributeError("Can't get attribute 'local_fn' on <module '__main__'>")

    monkeypatch.setattr(art, "load_model", fails)
    with pytest.raises(UnloadableArtifact, match="defined in the notebook or script"):
        registry.load(mv.ref)

    def breaks(*args, **kwargs):
        raise AttributeError("'LogisticRegression' object has no attribute 'multi_class'")

    monkeypatch.setattr(art, "load_model", breaks)
    with pytest.raises(AttributeError, match="no attribute 'multi_class'") as info:
        registry.load(mv.ref)
    assert not isinstance(info.value, UnloadableArtifact)  # not an import problem: as it was


# -- real processes: a notebook script registers, `slipway serve` serves -------------------

NOTEBOOK = """
import json
import numpy as np
import slipway
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
{define}
rng = np.random.default_rng(0)
X = rng.normal(size=(200, 3))
y = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
pipe = make_pipeline(FunctionTransformer(log1p_abs), LogisticRegression()).fit(X, y)
slipway.register(pipe, "notebook", X, y, alias="production")
json.dump({{"rows": X[:5].tolist(), "labels": pipe.predict(X[:5]).tolist()}}, open("out.json", "w"))
"""
IN_MAIN = """
def log1p_abs(X):
    return np.log1p(np.abs(X))
"""


def run_python(args, cwd, home, pythonpath=None):
    """Run python (a script, or ``-m slipway ...``) in ``cwd`` on the store under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
    env.pop("PYTHONPATH", None)
    env.update(SLIPWAY_HOME=str(home), SLIPWAY_USER="tester")
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_a_notebook_function_is_refused_in_a_real_process(tmp_path):
    """A script defining its function in __main__ exits with the fix in the message."""
    (tmp_path / "notebook.py").write_text(NOTEBOOK.format(define=IN_MAIN))
    done = run_python(["notebook.py"], tmp_path, tmp_path / "home")
    assert done.returncode == 1
    assert "InvalidModel: The pipeline uses log1p_abs, defined in __main__" in done.stderr
    assert "Move log1p_abs into a module file" in done.stderr


@pytest.mark.slow
# one of the longest tests, last in collection order: a group of its own makes `--dist
# loadgroup` start it early instead of leaving one worker idle while it ends the run
@pytest.mark.xdist_group("long-tail")
def test_a_function_in_an_importable_module_serves_through_slipway_serve(tmp_path):
    """Next to the notebook only: refused, naming PYTHONPATH. On PYTHONPATH: registered, and a
    real `slipway serve` with the same PYTHONPATH answers as the pipeline did; `models verify`
    fails without it."""
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    (project / "mytransforms.py").write_text(MODULE)
    script = NOTEBOOK.format(define="from mytransforms import log1p_abs")
    (project / "notebook.py").write_text(script)

    refused = run_python(["notebook.py"], project, home)
    assert refused.returncode == 1
    assert "No module named 'mytransforms'" in refused.stderr
    assert f"export PYTHONPATH={project}" in refused.stderr

    done = run_python(["notebook.py"], project, home, pythonpath=project)
    assert done.returncode == 0, done.stderr
    expected = json.loads((project / "out.json").read_text())

    unverified = run_python(["-m", "slipway", "models", "verify"], tmp_path, home)
    assert unverified.returncode == 1 and "No module named 'mytransforms'" in unverified.stdout
    verified = run_python(["-m", "slipway", "models", "verify"], tmp_path, home, project)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    env = {"SLIPWAY_HOME": str(home), "SLIPWAY_USER": "tester", "PYTHONPATH": str(project)}
    with ServerProcess(["--no-auth"], env=env, log_dir=tmp_path / "server") as server:
        rows = [{f"feature_{i}": v for i, v in enumerate(row)} for row in expected["rows"]]
        body = {"instances": rows}
        r = httpx.post(f"{server.url}/v1/models/notebook/predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert [p["label"] for p in r.json()["predictions"]] == expected["labels"]
