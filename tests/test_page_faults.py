"""Pages on a workspace that turned read-only: what is there still shows; an action that must
write is one line on the page, never a traceback (AppTest through the router, a real tmpfs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import assert_clean, open_page
from mounts import remount, tmpfs

from core.config import RunConfig
from core.runs.store import Store


def test_a_read_only_workspace_reads_and_refuses_in_one_line(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    with tmpfs(tmp_path / "ws", "size=8m", lazy=True) as home:
        monkeypatch.setenv("LAB2MARKET_HOME", str(home))
        with Store(home) as store:
            run = store.create_run(RunConfig().to_dict(), name="made before")
            store.set_status(run.id, "running")
            store.set_status(run.id, "completed")
        remount(home, "ro")
        try:
            at = open_page("pages/home.py")
            assert f"home_runs_open_{run.id}" in {b.key for b in at.button}
            at.button(key="home_quick_start").click().run()
            assert_clean(at)
            errors = [e.value for e in at.error]
            assert len(errors) == 1 and "read-only" in errors[0] and "\n" not in errors[0]
        finally:
            remount(home, "rw")


def test_an_export_on_a_full_disk_is_one_line_and_publishes_nothing(workspace, tmp_path: Path):
    """The scenario of issue 16: a full disk used to leave a half bundle that `bundles` listed."""
    from conftest import run_cli, run_json, train_run

    run_id = train_run(workspace)
    export = workspace.home / "runs" / run_id / "export"
    with tmpfs(export, "size=64k"):  # room for the staging folder, not for the model files
        done = run_cli("export", run_id, "--latency-budget", "0.2", home=workspace.home,
                       check=False)
        assert done.returncode == 2, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "disk is full" in lines[0], done.stderr
        assert "Traceback" not in done.stderr
        assert run_json("bundles", run_id, home=workspace.home)["bundles"] == []
        assert not [p for p in export.iterdir() if p.name != "latency.json"], list(
            export.iterdir())
