"""Which run a page shows, and names shown as plain text (AppTest through the router).

Runs are written straight into the store (no process runs): a "running" one carries this test
process's pid, so reconciliation leaves it running; a checkpoint is an empty ``last.pt`` (the
pickers only ask whether one exists; nothing here loads it).
"""

from __future__ import annotations

import os
from pathlib import Path

from conftest import assert_clean, frame_with, open_page, sidebar_active_run

from core.config import RunConfig
from core.runs.store import Store
from ui.format import plain


def stored_run(store: Store, status: str, name: str = "", checkpoint: bool = False,
               epoch: int = 0):
    cfg = RunConfig()
    cfg.train.epochs = 10
    run = store.create_run(cfg.to_dict(), name=name)
    store.set_status(run.id, "running")
    store.update_run(run.id, pid=os.getpid(), epoch=epoch)
    if status != "running":
        store.set_status(run.id, status)
    if checkpoint:
        folder = store.home / "runs" / run.id / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "last.pt").touch()
    return store.get_run(run.id)


def test_train_page_shows_the_newest_running_run(home: Path) -> None:
    """A run started from the CLI or another tab is shown when no run is active."""
    store = Store(home)
    stored_run(store, "completed", name="done before")
    older = stored_run(store, "running", name="older")
    newest = stored_run(store, "running", name="from the CLI", epoch=2)
    at = open_page("pages/train.py")
    assert at.session_state["active_run"] == newest.id
    assert sidebar_active_run(at).startswith("from the CLI")
    assert any("from the CLI" in m.value for m in at.markdown)
    table = at.dataframe(key="train_runs_table").value
    assert list(table.loc[table["Run"] == newest.id, "Epoch"]) == ["2/10"]
    store.update_run(newest.id, epoch=3)  # the table follows the run, like the monitor
    at.run()
    table = at.dataframe(key="train_runs_table").value
    assert list(table.loc[table["Run"] == newest.id, "Epoch"]) == ["3/10"]
    for run in (older, newest):
        store.set_status(run.id, "completed")


def test_pickers_preselect_the_active_run_else_the_newest_completed(home: Path) -> None:
    store = Store(home)
    old = stored_run(store, "completed", name="old", checkpoint=True)
    done = stored_run(store, "completed", name="done", checkpoint=True)
    stored_run(store, "failed", name="broken", checkpoint=True)  # newer, but not completed
    untrained = stored_run(store, "completed", name="no checkpoint")
    at = open_page("pages/predict.py")
    picker = at.selectbox(key="predict_pick_run")
    assert picker.value == done.id
    assert untrained.id not in picker.options
    assert at.session_state["active_run"] is None  # preselecting is not picking
    picker.set_value(old.id).run()
    assert_clean(at)
    assert at.session_state["active_run"] == old.id  # a pick makes the run active everywhere
    for page, key in (("pages/deploy.py", "deploy_run"), ("pages/explain.py",
                                                           "explain_pick_run")):
        at.switch_page(page).run()
        assert_clean(at)
        assert at.selectbox(key=key).value == old.id, page


def test_an_untrained_active_run_is_not_offered(home: Path) -> None:
    store = Store(home)
    done = stored_run(store, "completed", name="done", checkpoint=True)
    fresh = stored_run(store, "completed", name="fresh")
    at = open_page("pages/explain.py", active_run=fresh.id)
    assert at.selectbox(key="explain_pick_run").value == done.id
    assert any("no checkpoint yet" in c.value for c in at.caption)
    assert at.session_state["active_run"] == fresh.id


MARKDOWN_NAMES = ["**bold**", "[link](http://example.com)"]


def test_class_names_are_plain_text(home: Path) -> None:
    """Class names that look like Markdown are shown literally (escaped), never rendered."""
    at = open_page("pages/data.py")
    rows = "\n".join(f"{i},{i % 7},{MARKDOWN_NAMES[i % 2]}" for i in range(40))
    at.file_uploader(key="data_csv_upload").set_value(
        ("marked.csv", f"x1,x2,kind\n{rows}\n".encode(), "text/csv"))
    at.run()
    at.text_input(key="data_csv_target").set_value("kind")
    at.button(key="data_csv_import").click().run()
    assert_clean(at)
    assert at.selectbox(key="data_dataset").value == "marked"
    classes = next(c.value for c in at.caption if c.value.startswith("Classes:"))
    assert classes == "Classes: " + ", ".join(plain(n) for n in sorted(MARKDOWN_NAMES))


def test_plain_escapes_what_markdown_would_render() -> None:
    assert plain("**bold**") == r"\*\*bold\*\*"
    assert plain("[x](http://e.com)") == r"\[x\](http\://e.com)"
    assert plain("$x$ :red[y] <b>") == r"\$x\$ \:red\[y\] \<b\>"
    assert plain("# title\n- item") == r"\# title - item"  # one line, no heading
    assert plain("- item") == r"\- item" and plain("1. first") == r"1\. first"
    assert plain("digits my-pets 0.5") == "digits my-pets 0.5"  # plain names stay readable


def test_home_shows_the_queue_and_sets_how_many_train_at_once(home: Path) -> None:
    store = Store(home)
    running = stored_run(store, "running", name="busy")
    waiting = stored_run(store, "running", name="waiting")
    store.set_status(waiting.id, "queued", expect=("running",))
    busy_job = store.create_job(running.id, "train", ["-c", "pass"], heavy=True)
    store.claim_next_job(slots=1)
    store.update_job(busy_job.id, pid=os.getpid())  # alive: reconcile leaves it running
    queued_job = store.create_job(waiting.id, "train", ["-c", "pass"], heavy=True)
    at = open_page("pages/home.py")
    queue = frame_with(at, "Waits behind")
    assert list(queue["Job"]) == [busy_job.id, queued_job.id]
    assert list(queue["Waits behind"].fillna(-1)) == [-1, 0]
    at.session_state["home_max_jobs_panel"] = True  # the popover opened
    at.run().number_input(key="home_max_jobs").set_value(3).run()
    assert_clean(at)
    assert store.get_setting("max_jobs") == "3"
    assert {b.key for b in at.button} >= {f"home_runs_open_{r.id}" for r in (running, waiting)}
