"""Shared fixtures and helpers: seeded randomness, workspaces (one per test, one per module),
CLI and job helpers, tiny trained runs, AppTest helpers, and the browser fixtures (built on
``browser_support``)."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from pg_support import pg_server, pg_url  # noqa: F401  (fixtures: the session's PostgreSQL)
from train_support import train_run  # noqa: F401  (re-exported: the tests import it from here)

from core.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd
    from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP_TIMEOUT = 60  # seconds for an AppTest run: the first one imports pandas, plotly, datasets
# A warm job parent (core.runs.warm) started by the tests ends soon after the last one.
os.environ.setdefault("LAB2MARKET_WARM_IDLE_S", "60")
# Pages are tested for what they import themselves: the dashboard's background preload of torch
# (core.runs.warm.preload_in_background) is off, except in the test of that preload.
os.environ.setdefault("LAB2MARKET_PRELOAD", "0")


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a runtime requirement
        return
    torch.manual_seed(0)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty workspace, also exported as $LAB2MARKET_HOME for subprocesses."""
    path = tmp_path / "ws"
    path.mkdir()
    monkeypatch.setenv("LAB2MARKET_HOME", str(path))
    return path


@pytest.fixture
def workspace(home: Path) -> Iterator[Workspace]:
    """The workspace ``home``, open for the test (its store is closed after it)."""
    with Workspace.open(home) as opened:
        yield opened


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """A workspace shared by a module's tests, ``ws.home`` exported as $LAB2MARKET_HOME while
    they run; its store is closed after the last one."""
    path = tmp_path_factory.mktemp("ws")
    with pytest.MonkeyPatch.context() as mp, Workspace.open(path) as opened:
        mp.setenv("LAB2MARKET_HOME", str(path))
        yield opened


def run_cli(*args: str, home: Path | None = None, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m core ...`` as a real subprocess; parse nothing, return the process."""
    cmd = [sys.executable, "-m", "core", *args]
    if home is not None:
        cmd += ["--home", str(home)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_json(*args: str, home: Path, timeout: float = 300) -> dict:
    return json.loads(run_cli(*args, "--json", home=home, timeout=timeout).stdout)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.05, message: str = ""):
    """Poll ``predicate`` until it returns something truthy, bounded in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_python(code: str, home: Path | None = None, timeout: float = 120) -> str:
    """Run ``code`` in a fresh interpreter from the project root (over the workspace ``home``, if
    given); it must exit 0. Returns the last line it printed."""
    env = dict(os.environ)
    if home is not None:
        env["LAB2MARKET_HOME"] = str(home)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def heavy_modules_after_page(page: str, home: Path, active_run: str, check: str = "",
                             modules: tuple[str, ...] = ("torch",),
                             **state: Any) -> dict[str, bool]:
    """Open ``page`` through the router in a fresh interpreter (AppTest, the run ``active_run``
    active, ``state`` set) and say which of ``modules`` it imported. ``check``: Python run on
    ``at`` after the page drew (an assert that something was rendered)."""
    state = {"active_run": active_run, **state}
    code = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({str(ROOT / 'app.py')!r}, default_timeout=60)\n"
        + "".join(f"at.session_state[{k!r}] = {v!r}\n" for k, v in state.items())
        + f"at.run(); at.switch_page({page!r}); at.run()\n"
        "assert not at.exception, at.exception\n"
        + (check + "\n" if check else "")
        + f"print(','.join(str(m in sys.modules) for m in {list(modules)!r}))\n"
    )
    found = run_python(code, home).split(",")
    return dict(zip(modules, (f == "True" for f in found), strict=True))


# -- trained runs (train_run: see train_support) ------------------------------------------------


# The ensemble tests' fixtures: the module defines ``members``, digits runs trained with seeds
# 0, 1, ... (``train_run``) in the module's workspace ``ws``.


@pytest.fixture(scope="module")
def resized(ws: Workspace, members: list[str]) -> str:
    """A member trained on 12 x 12 inputs (the others see digits' native 8 x 8), with the seed
    after the members'."""
    return train_run(ws, train={"seed": len(members)}, data={"image_size": 12})


@pytest.fixture(scope="module")
def ensembles(ws: Workspace, members: list[str]) -> dict[str, str]:
    """One ensemble of ``members`` per combiner method: ``{method: run id}``."""
    from core.analyze import ENSEMBLE_METHODS
    from core.analyze.ensemble import create_ensemble

    return {m: create_ensemble(ws, members, m).id for m in ENSEMBLE_METHODS}


# -- AppTest --------------------------------------------------------------------------------------


def open_page(page: str, timeout: float = APP_TIMEOUT, **state: Any) -> AppTest:
    """``page`` (e.g. ``"pages/train.py"``) through the router, as a user reaches it, with the
    session ``state`` set first; the page must run without an exception."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page != "pages/home.py":
        at.switch_page(page)
        at.run()
    assert_clean(at)
    return at


def sidebar_active_run(at: AppTest) -> str | None:
    """The label of the sidebar's active-run popover (what the user reads there), or None."""
    for node in at.sidebar.children.values():
        proto = getattr(node, "proto", None)
        if type(proto).__name__ == "Block" and proto.HasField("popover"):
            return proto.popover.label
    return None


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def frame_with(at: AppTest, column: str) -> pd.DataFrame:
    """The first dataframe on the page that has ``column`` (display frames have no key)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


# -- browser (Playwright on the system Chromium; see browser_support) ----------------------------


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$LAB2MARKET_ARTIFACTS``, else a temporary folder (printed)."""
    folder = Path(os.environ.get("LAB2MARKET_ARTIFACTS") or tmp_path_factory.mktemp("browser"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """The system Chromium, launched once per module."""
    from browser_support import chromium

    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser) -> Iterator:
    """A fresh page (its own context) of the module's browser, closed after the test."""
    from browser_support import new_page

    with new_page(browser) as opened:
        yield opened


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The app served (with ``SERVER_ENV``) over a fresh workspace for a module's browser tests:
    ``(url, home)``. The runs they leave active are cancelled after the module."""
    from browser_support import SERVER_ENV, stop_jobs, streamlit_app

    home = tmp_path_factory.mktemp("browser_ws")
    try:
        with streamlit_app(home, **SERVER_ENV) as url:
            yield url, home
    finally:
        stop_jobs(home)


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A workspace of the module's own holding one completed digits run (``train_run``'s
    defaults), closed again so that a served app can use it: ``(home, run id)``."""
    home = tmp_path_factory.mktemp("trained_ws")
    with Workspace.open(home) as ws:
        return home, train_run(ws)
