"""Pages on a workspace that turned read-only: what is there still shows; an action that must
write is one line on the page, never a traceback (AppTest through the router, a real tmpfs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import assert_clean, frame_with, open_page
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
            assert run.id in set(frame_with(at, "Run")["Run"])
            at.button(key="home_quick_start").click().run()
            assert_clean(at)
            errors = [e.value for e in at.error]
            assert len(errors) == 1 and "read-only" in errors[0] and "\n" not in errors[0]
        finally:
            remount(home, "rw")
