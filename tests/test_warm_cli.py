"""``python -m core`` answered by the warm parent (``core.runs.warm_cli``): the same output, exit
status and files as a cold command, in the caller's folder and umask; Ctrl-Z and Ctrl-C reach
the command; a killed caller does not leave its command running; a hand-off in doubt never runs
the command twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, wait_for
from test_warm import _alive, _stat, _stat_or_empty, _warm_parent

from core.runs import warm_cli
from core.runs.warm_cli import forward
from core.workspace import Workspace

COMMANDS = (["runs", "--json"], ["status", "nosuch"], ["--help"], ["train", "--epochs", "0"])


def _cold(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAB2MARKET_WARM": "0"}
    return subprocess.run([sys.executable, "-m", "core", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_forwarded_command_prints_and_exits_as_a_cold_one(tmp_path, capfd):
    _warm_parent()
    capfd.readouterr()
    for argv in COMMANDS:
        full = ["--home", str(tmp_path / "ws"), *argv]
        code = forward(full)  # this process's own stdout and stderr, passed to the warm child
        assert code is not None, f"no warm parent took the command: {warm_cli.fallback}"
        warm = capfd.readouterr()
        cold = _cold(full, ROOT)
        assert (code, warm.out, warm.err) == (cold.returncode, cold.stdout, cold.stderr), argv
    assert {_cold(["--home", str(tmp_path / "ws"), *a], ROOT).returncode
            for a in COMMANDS} == {0, 2}  # successes and a user's errors both compared


def test_a_forwarded_command_works_in_the_callers_folder_and_umask(tmp_path, monkeypatch):
    _warm_parent()
    monkeypatch.chdir(tmp_path)
    previous = os.umask(0o077)
    try:
        assert forward(["--home", "relative", "runs"]) == 0
    finally:
        os.umask(previous)
    database = tmp_path / "relative" / "lab2market.db"
    assert database.is_file()  # relative to the caller's folder, not the parent's
    assert database.stat().st_mode & 0o077 == 0  # made under the caller's umask


def _forwarded_child(parent: int, marker: str) -> int:
    """The warm parent's child running the caller's command (its title is the command)."""
    def find() -> int | None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or _stat_or_empty(int(entry.name))[1:2] != [str(parent)]:
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline and b"_job" not in cmdline:
                return int(entry.name)
        return None
    return wait_for(find, timeout=30, interval=0.05, message="the forwarded command's process")


def _blocking_train(home: Path, name: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "core", "--home", str(home), "train", "--dataset", "digits",
            "--model", "mlp", "--epochs", "300", "--name", name]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _running_run(home: Path) -> str:
    with Workspace.open(home) as ws:
        return wait_for(lambda: next((r.id for r in ws.store.list_runs()
                                      if r.status == "running" and r.epoch >= 1), None),
                        timeout=120, interval=0.1, message="the run's first epoch")


def test_ctrl_z_and_ctrl_c_reach_a_forwarded_blocking_command(tmp_path):
    parent = _warm_parent()
    caller = _blocking_train(tmp_path, "ctrl-c-forwarded")
    try:
        child = _forwarded_child(parent, "ctrl-c-forwarded")
        assert int(_stat(child)[3]) == child  # in its own session, not the caller's group
        run_id = _running_run(tmp_path)
        caller.send_signal(signal.SIGTSTP)  # Ctrl-Z: both stop
        wait_for(lambda: _stat(caller.pid)[0] == "T" and _stat(child)[0] == "T", timeout=30,
                 message="caller and command stopped")
        caller.send_signal(signal.SIGCONT)  # fg: both go on
        wait_for(lambda: _stat(caller.pid)[0] != "T" and _stat(child)[0] != "T", timeout=30,
                 message="caller and command continued")
        caller.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal does
        out, err = caller.communicate(timeout=120)
    finally:
        caller.kill()
    assert caller.returncode == 0, err  # cancelled: its checkpoint kept, `resume` goes on
    assert run_id in out and "cancelled" in out
    with Workspace.open(tmp_path) as ws:
        assert ws.store.get_run(run_id).status == "cancelled"


def test_a_killed_caller_does_not_leave_its_command_running(tmp_path):
    parent = _warm_parent()
    caller = _blocking_train(tmp_path, "caller-killed")
    child = _forwarded_child(parent, "caller-killed")
    run_id = _running_run(tmp_path)
    caller.kill()  # -9: no chance to relay anything
    caller.wait(timeout=30)
    wait_for(lambda: not _alive(child), timeout=30, interval=0.05,
             message="the forwarded command ends with its caller")
    with Workspace.open(tmp_path) as ws:  # as after a closed terminal: the job itself goes on
        assert ws.store.get_run(run_id).status in ("running", "completed")
        from core.runs import cancel

        cancel(ws.store, run_id)


def test_a_command_whose_hand_off_is_in_doubt_does_not_also_run_here(tmp_path, monkeypatch,
                                                                      capfd):
    """A parent that takes the request but never replies: a child may hold the command, so it
    must not run a second time here; the caller says so and exits 1."""
    import socket
    import threading

    from core.runs import warm_address

    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # another installation: a parent of its own
    monkeypatch.setattr(warm_address, "REPLY_TIMEOUT_S", 0.5)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(warm_address.socket_address(warm_address.parent_key(os.environ)))
    silent.listen(1)

    def take_and_hang_up() -> None:
        conn, _ = silent.accept()
        with conn:
            conn.recv(1 << 16)  # the request arrives; no reply, ever
            threading.Event().wait(2)

    taker = threading.Thread(target=take_and_hang_up, daemon=True)
    taker.start()
    try:
        code = forward(["--home", str(tmp_path / "ws"), "runs"])
    finally:
        silent.close()
    assert code == 1
    assert "without reporting a status" in capfd.readouterr().err
    assert not (tmp_path / "ws").exists()  # the command did not run here as well


def test_a_socket_held_by_another_user_is_never_sent_a_command(tmp_path, monkeypatch):
    """Anyone may bind an abstract socket's name first: a command (its environment, its
    terminal) goes only to a process of this user, else it runs here."""
    import shutil

    from core.runs import warm_address

    if os.getuid() != 0 or not shutil.which("runuser"):
        pytest.skip("needs root to play another user")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # another installation: a parent of its own
    address = warm_address.socket_address(warm_address.parent_key(os.environ))
    code = ("import socket, sys, time\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            f"s.bind({address!r}); s.listen(1); print('ready', flush=True)\n"
            "conn, _ = s.accept(); time.sleep(0.5)\n"
            "print('sent' if conn.recv(1 << 16) else 'nothing', flush=True)\n")
    impostor = subprocess.Popen(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", code],
                                stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        assert impostor.stdout.readline().strip() == "ready"
        assert forward(["--home", str(tmp_path / "ws"), "runs"]) is None  # runs here instead
        assert "uid 65534" in warm_cli.fallback
        assert impostor.stdout.readline().strip() == "nothing"
    finally:
        impostor.kill()
        impostor.wait(timeout=10)
