"""The warm job parent (``core.runs.warm``): jobs forked from a parent that has imported torch
run exactly as cold ones (their own session, environment, log and status; a cancel stops them
with a checkpoint), and losing the parent (kill -9) costs the next job only its warm start. The
parent's spare child (forked ahead of the next job) leads its own session, is replaced when it is
lost, and ends with its parent."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from conftest import ROOT, run_python, wait_for

from core.runs import cancel, launch
from core.runs.warm import current_parent, state_folder, wait_ready
from core.runs.warm_address import parent_key
from core.runs.warm_parent import TICK_S


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def _warm_parent() -> int:
    """Start the parent if needed and wait until it answers; returns its pid."""
    assert wait_ready(timeout=120), "the warm parent did not answer"
    key = parent_key(os.environ)
    found = current_parent(os.environ)
    assert found is not None and found[0] == key
    return found[1]


def _config(epochs: int):
    from core.config import RunConfig

    raw = RunConfig().to_dict()
    raw["model"]["name"] = "mlp"
    raw["train"].update(epochs=epochs, batch_size=32)
    return RunConfig.from_dict(raw)


def _job_of(ws, run_id: str):
    return wait_for(lambda: next((j for j in ws.store.list_jobs(run_id=run_id) if j.pid), None),
                    timeout=60, interval=0.05, message="the job's pid")


def _completed(ws, run_id: str):
    return wait_for(lambda: (r := ws.store.get_run(run_id)).status == "completed" and r,
                    timeout=180, interval=0.1, message=f"run {run_id} completed")


def test_a_warm_job_is_a_full_job_in_its_own_session_and_stops_on_cancel(ws):
    parent = _warm_parent()
    done = launch(ws.store, _config(2))
    assert int(_stat(_job_of(ws, done.id).pid)[1]) == parent  # ppid: forked by the warm parent
    assert _completed(ws, done.id).epoch == 2
    assert "completed after 2 epoch(s)" in (ws.run_dir(done.id) / "log.txt").read_text()

    run = launch(ws.store, _config(200))
    job = _job_of(ws, run.id)
    assert int(_stat(job.pid)[3]) == job.pid  # its own session: a cancel signals it, not the parent
    wait_for(lambda: ws.store.get_run(run.id).epoch >= 1, timeout=120, interval=0.1)
    cmdline = Path(f"/proc/{job.pid}/cmdline").read_bytes().replace(b"\0", b" ")
    assert b"-m core _job " in cmdline  # `ps` names the job, not the parent
    assert cancel(ws.store, run.id).status == "cancelled"
    assert (ws.run_dir(run.id) / "checkpoints" / "last.pt").is_file()
    os.kill(parent, 0)  # the parent lives on


def test_a_spare_child_waits_in_its_own_session_and_a_lost_one_is_replaced(ws):
    parent = _warm_parent()
    spare = _spare_of(parent)
    assert int(_stat(spare)[3]) == spare  # already leads its own session: a job at once
    os.kill(spare, signal.SIGKILL)  # lost while waiting (the OOM killer, a careless kill)
    run = launch(ws.store, _config(2))
    job = _job_of(ws, run.id)
    assert int(_stat(job.pid)[1]) == parent  # still a warm start
    _completed(ws, run.id)
    assert _spare_of(parent) not in (spare, job.pid)  # and a new spare waits for the next job


def test_a_killed_parent_costs_the_next_job_only_its_warm_start(ws):
    parent = _warm_parent()
    spare = _spare_of(parent)
    os.kill(parent, signal.SIGKILL)
    wait_for(lambda: not _is_warm(parent), timeout=10, interval=0.05)
    wait_for(lambda: not _alive(spare), timeout=10, interval=0.05,
             message="the spare child exits with its parent")
    run = launch(ws.store, _config(1))  # started cold; a new parent is started for later jobs
    assert not _is_warm(int(_stat(_job_of(ws, run.id).pid)[1]))
    _completed(ws, run.id)
    assert _warm_parent() != parent


def test_warm_start_is_off_with_the_setting(ws, monkeypatch):
    _warm_parent()
    monkeypatch.setenv("LAB2MARKET_WARM", "0")
    run = launch(ws.store, _config(1))
    assert not _is_warm(int(_stat(_job_of(ws, run.id).pid)[1]))
    _completed(ws, run.id)


def _spare_of(parent: int) -> int:
    """The parent's waiting child (no job of this test runs now)."""
    def spare() -> int | None:
        children = [int(p.name) for p in Path("/proc").iterdir()
                    if p.name.isdigit() and _alive(int(p.name))
                    and _stat_or_empty(int(p.name))[1:2] == [str(parent)]]
        return children[0] if len(children) == 1 else None
    return wait_for(spare, timeout=10, interval=0.05, message="the warm parent's spare child")


def _alive(pid: int) -> bool:
    return _stat_or_empty(pid)[:1] not in ([], ["Z"], ["X"])


def _stat_or_empty(pid: int) -> list[str]:
    try:
        return _stat(pid)
    except OSError:
        return []


def _is_warm(pid: int) -> bool:
    """``pid`` is a live warm parent (not a zombie, not gone; a forked job shows its own
    command line)."""
    try:
        return (b"core.runs.warm" in Path(f"/proc/{pid}/cmdline").read_bytes()
                and _stat(pid)[0] not in ("Z", "X"))
    except OSError:
        return False


def test_the_dashboard_preloads_torch_in_the_background(home, monkeypatch):
    code = (
        "import sys, time\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({str(ROOT / 'app.py')!r}, default_timeout=60)\n"
        "at.run()\n"
        "assert not at.exception, at.exception\n"
        "deadline = time.monotonic() + 60\n"
        "while 'captum.attr' not in sys.modules and time.monotonic() < deadline:\n"
        "    time.sleep(0.1)\n"
        "print('torch' in sys.modules and 'captum.attr' in sys.modules)\n")
    monkeypatch.setenv("LAB2MARKET_PRELOAD", "1")
    assert run_python(code, home) == "True"


def test_a_parent_ends_when_its_code_changes_not_when_another_parent_says_so():
    parent = _warm_parent()
    key = parent_key(os.environ)
    # A parent of other code wrote last where the installation's newest parent says who it is
    # (one of older code that finished importing after this one): this one serves on.
    current = state_folder() / f"{key.split('-')[0]}.current"
    current.write_text(f"{key.split('-')[0]}-000000000000 1")
    time.sleep(TICK_S + 1)  # past its next idle tick
    assert _is_warm(parent)
    # The code on disk changes: nobody asks for this key any more, and it ends at a tick.
    edited = ROOT / "core" / "runs" / "records.py"
    os.utime(edited)
    wait_for(lambda: not _is_warm(parent), timeout=3 * TICK_S, interval=0.1,
             message="the parent of the old code ends")
