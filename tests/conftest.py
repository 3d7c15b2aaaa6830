"""Shared fixtures: seeded randomness, a fresh workspace per test, CLI and job helpers."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


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


def run_cli(*args: str, home: Path | None = None, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m core ...`` as a real subprocess; parse nothing, return the process."""
    cmd = [sys.executable, "-m", "core", *args]
    if home is not None:
        cmd += ["--home", str(home)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
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
