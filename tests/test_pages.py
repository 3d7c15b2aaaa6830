"""AppTest for every page: no exception, real launches from the Train page, safe imports on Data.

The pages run in-process against a fresh workspace (``$LAB2MARKET_HOME``); launches start real
background jobs, which are awaited (bounded) so none outlives its test.
"""

from __future__ import annotations

import io
import os
import signal
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, assert_clean, frame_with, open_page, run_python, sidebar_active_run
from PIL import Image
from streamlit.testing.v1 import AppTest

from core import runs
from core.config import RunConfig
from core.runs.store import ACTIVE, Store
from ui import clicks
from ui.components import RECENT_ROWS

PAGES = ("pages/home.py", "pages/data.py", "pages/train.py")


def job_pids(home: Path) -> list[int]:
    """Processes running a job of the workspace ``home`` (read from /proc)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"_job" in args and str(home).encode() in args:
            pids.append(int(cmdline.parent.name))
    return pids


@pytest.fixture(autouse=True)
def _no_job_outlives_its_test(home: Path):
    yield
    for pid in job_pids(home):  # only after a failed test: the tests wait for or cancel theirs
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def wait_terminal(store: Store, run_id: str, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs.reconcile(store)
        run = store.get_run(run_id)
        if run.status not in ACTIVE:
            return run
        time.sleep(0.25)
    runs.cancel(store, run_id)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s")


def fake_run(store: Store, status: str = "completed", points: int = 0, **fields):
    """A run written straight into the store, with ``points`` step-loss rows and epoch rows."""
    cfg = RunConfig()
    cfg.train.epochs = 3
    run = store.create_run(cfg.to_dict(), name=fields.pop("name", ""))
    store.set_status(run.id, "running")
    rows = [(10 * (i + 1), "train/step_loss", 1.0 / (i + 1)) for i in range(points)]
    for epoch in range(1, 4):
        step = 100 * epoch
        rows += [(step, "epoch", float(epoch)), (step, "train/loss", 1.0 / epoch),
                 (step, "val/loss", 1.1 / epoch), (step, "train/acc", 0.3 * epoch),
                 (step, "val/acc", 0.28 * epoch), (step, "lr", 1e-3), (step, "throughput", 900.0)]
    store.log_metrics(run.id, rows)
    store.update_run(run.id, epoch=3, step=300, total_steps=300, device="cpu", best_metric=0.36,
                     pid=os.getpid(), **fields)
    if status != "running":
        store.set_status(run.id, status, error=fields.get("error"))
    return store.get_run(run.id)


def snapshot(home: Path) -> set[str]:
    return {str(p.relative_to(home)) for p in (home / "datasets").rglob("*")} \
        if (home / "datasets").exists() else set()


def png(color: int, size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), color, dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def imagefolder_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for cls, color in (("cats", 40), ("dogs", 200)):
            for i in range(8):
                zf.writestr(f"pets/{cls}/{i}.png", png(color + i))
    return buf.getvalue()


# -- every page renders --------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_an_empty_workspace(home: Path, page: str) -> None:
    at = open_page(page)
    assert not at.error
    assert f"`{home}`" in [m.value for m in at.sidebar.markdown]  # the workspace, every page
    assert f"Lab2Market {project_version()}" in [c.value for c in at.sidebar.caption]


def project_version() -> str:
    """The version in pyproject.toml: what the installed package's metadata must say."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_train_page_renders_with_runs_and_paginates(home: Path) -> None:
    store = Store(home)
    runs = [fake_run(store) for _ in range(25)]
    failed = fake_run(store, "failed", error="CUDA out of memory: lower the batch size")
    at = open_page("pages/train.py", active_run=failed.id)
    assert len(at.dataframe(key="train_runs_table").value) == 20  # one page, not every run
    assert sidebar_active_run(at) == f"{failed.id} · digits/smallcnn · failed"
    at.pagination(key="train_runs_page").set_value(2).run()
    assert_clean(at)
    assert len(at.dataframe(key="train_runs_table").value) == 6
    assert any("CUDA out of memory" in e.value for e in at.error)
    assert "Loss curve: 6 points" in [c.value for c in at.caption]
    at.multiselect(key="train_compare").set_value([runs[0].id, runs[1].id]).run()
    assert_clean(at)  # their curves are overlaid, dashed


def test_home_lists_the_newest_runs_and_opens_one_on_train(home: Path) -> None:
    store = Store(home)
    runs = [fake_run(store, name=f"run {i}") for i in range(10)]
    at = open_page("pages/home.py")
    shown = [b.key for b in at.button if b.key.startswith("home_runs_open_")]
    assert shown == [f"home_runs_open_{r.id}" for r in reversed(runs)][:RECENT_ROWS]
    assert any(link.label.startswith("Every run") for link in at.get("page_link"))
    at.button(key=f"home_runs_open_{runs[3].id}").click().run()
    assert_clean(at)
    assert at.session_state["active_run"] == runs[3].id
    assert [t.value for t in at.title] == ["Train"]


def test_data_page_shows_every_dataset(home: Path) -> None:
    at = open_page("pages/data.py")
    names = set(at.selectbox(key="data_dataset").options)
    assert {"digits", "shapes", "iris", "wine", "breast_cancer"} <= names
    assert at.image  # the sample grid of digits
    at.selectbox(key="data_dataset").set_value("iris").run()
    assert_clean(at)
    assert frame_with(at, "petal width (cm)").shape[0] == 20


def test_pages_never_import_torch(home: Path) -> None:
    code = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        "at = AppTest.from_file('app.py', default_timeout=60); at.run()\n"
        "for p in ('pages/data.py', 'pages/train.py'):\n"
        "    at.switch_page(p); at.run()\n"
        "    assert not at.exception, at.exception\n"
        "print('torch' in sys.modules)\n"
    )
    assert run_python(code) == "False"


# -- Train -----------------------------------------------------------------------------------------


def test_launch_from_train_page_completes(home: Path) -> None:
    at = open_page("pages/train.py")
    assert at.selectbox(key="train_dataset").value == "digits"
    assert at.selectbox(key="train_model").value == "smallcnn"
    at.number_input(key="train_epochs").set_value(1)
    at.text_input(key="train_run_name").set_value("from the form")
    at.button(key="FormSubmitter:train_form-Launch").click().run()
    assert_clean(at)
    run_id = at.session_state["active_run"]
    store = Store(home)
    run = wait_terminal(store, run_id)
    assert run.status == "completed", run.error
    assert run.name == "from the form" and run.config["train"]["epochs"] == 1
    assert (home / "runs" / run_id / "config.json").is_file()
    at.run()
    assert_clean(at)
    points = [c.value for c in at.caption if c.value.startswith("Loss curve:")]
    assert points and int(points[0].split()[2]) > 0
    assert frame_with(at, "val/loss").shape[0] == 1


def test_live_monitor_reads_only_new_rows(home: Path) -> None:
    store = Store(home)
    run = fake_run(store, "running", points=5)
    at = open_page("pages/train.py", active_run=run.id)
    assert "Loss curve: 11 points" in [c.value for c in at.caption]
    store.log_metrics(run.id, [(300, "val/loss", 0.5), (310, "train/step_loss", 0.2)])
    at.run()
    # The val/loss at step 300 was already held; only the new step-loss point is added.
    assert "Loss curve: 12 points" in [c.value for c in at.caption]
    store.set_status(run.id, "completed")
    at.run()
    assert_clean(at)


def test_change_of_dataset_suggests_defaults(home: Path) -> None:
    at = open_page("pages/train.py")
    at.selectbox(key="train_dataset").set_value("iris").run()
    assert_clean(at)
    assert at.selectbox(key="train_model").value == "mlp"
    assert at.selectbox(key="train_model").options == ["mlp"]
    assert at.number_input(key="train_epochs").value == 30


def test_a_failed_run_shows_its_error(home: Path) -> None:
    at = open_page("pages/train.py")
    at.text_input(key="train_weights").set_value("/no/such/weights.pt")
    at.number_input(key="train_epochs").set_value(1)
    at.button(key="FormSubmitter:train_form-Launch").click().run()
    assert_clean(at)
    run_id = at.session_state["active_run"]
    run = wait_terminal(Store(home), run_id)
    assert run.status == "failed" and "weights" in run.error.lower()
    at.run()
    assert any("failed" in e.value for e in at.error)


def test_stop_resume_clone_delete(home: Path, monkeypatch) -> None:
    # Every click below comes within the window in which a repeated click is taken as the same
    # one (ui.clicks), widened so a slow machine cannot change that: Stop, Resume, Stop all act.
    monkeypatch.setattr(clicks, "REPEAT_S", 600.0)
    store = Store(home)
    cfg = RunConfig()
    cfg.train.epochs, cfg.train.batch_size = 400, 8
    run = runs.launch(store, cfg, name="long")
    deadline = time.monotonic() + 60
    while store.get_run(run.id).status != "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    at = open_page("pages/train.py", active_run=run.id)
    at.button(key="train_stop").click().run()
    assert_clean(at)
    assert store.get_run(run.id).status == "cancelled"
    assert not job_pids(home), "a stopped job is still running"

    at.button(key="train_resume").click().run()
    assert_clean(at)
    assert store.get_run(run.id).status in ACTIVE
    at.button(key="train_stop").click().run()
    assert_clean(at)
    assert store.get_run(run.id).status == "cancelled"
    assert not job_pids(home), "a cancelled job is still running"

    at.button(key="train_clone").click().run()
    assert_clean(at)
    assert at.number_input(key="train_epochs").value == 400
    assert at.number_input(key="train_batch_size").value == 8
    assert at.text_input(key="train_run_name").value == "long (clone)"

    at.button(key="train_delete").click().run()
    assert (home / "runs" / run.id).exists()  # nothing happens before the confirmation
    at.button(key="train_delete_yes").click().run()
    assert_clean(at)
    assert store.count_runs() == 0 and not (home / "runs" / run.id).exists()
    assert at.session_state["active_run"] is None


def test_home_quick_start_launches_digits(home: Path) -> None:
    at = open_page("pages/home.py")
    at.button(key="home_quick_start").click().run()
    assert_clean(at)
    run_id = at.session_state["active_run"]
    store = Store(home)
    run = store.get_run(run_id)
    assert (run.dataset, run.model) == ("digits", "smallcnn")
    assert [t.value for t in at.title] == ["Train"]  # it switched to the Train page
    runs.cancel(store, run_id)  # completing a launched run is tested from the Train page


# -- Data: imports -----------------------------------------------------------------------------


def upload(at: AppTest, key: str, name: str, data: bytes, mime: str) -> AppTest:
    at.file_uploader(key=key).set_value((name, data, mime))
    return at.run()


def test_zip_import_lists_the_new_dataset(home: Path) -> None:
    at = open_page("pages/data.py")
    upload(at, "data_zip_upload", "My Pets.zip", imagefolder_zip(), "application/zip")
    at.button(key="data_zip_import").click().run()
    assert_clean(at)
    assert not at.error
    assert "my-pets" in at.selectbox(key="data_dataset").options
    assert at.selectbox(key="data_dataset").value == "my-pets"
    assert any("Imported dataset my-pets" in s.value for s in at.success)
    assert (home / "datasets" / "my-pets").is_dir()


def test_csv_import_with_target(home: Path) -> None:
    at = open_page("pages/data.py")
    rows = "\n".join(f"{i},{i * 0.5},{'a' if i % 2 else 'b'}" for i in range(30))
    upload(at, "data_csv_upload", "tiny.csv", f"x1,x2,kind\n{rows}\n".encode(), "text/csv")
    at.text_input(key="data_csv_target").set_value("kind")
    at.button(key="data_csv_import").click().run()
    assert_clean(at)
    assert not at.error
    assert at.selectbox(key="data_dataset").value == "tiny"


def evil_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("cats/0.png", png(10))
        zf.writestr("../../escape.png", png(20))
    return buf.getvalue()


BAD_UPLOADS = {
    "not a zip": ("data_zip", "fake.zip", b"this is plain text, not an archive", "zip"),
    "zip with ..": ("data_zip", "evil.zip", evil_zip(), "zip"),
    "empty zip file": ("data_zip", "empty.zip", b"", "zip"),
    "csv without target": ("data_csv", "t.csv", b"a,b\n1,2\n3,4\n5,6\n", "label"),
    "empty csv": ("data_csv", "e.csv", b"", "label"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_upload_shows_error_and_changes_nothing(home: Path, case: str) -> None:
    prefix, filename, data, target = BAD_UPLOADS[case]
    at = open_page("pages/data.py")
    before = snapshot(home)
    names = set(at.selectbox(key="data_dataset").options)
    upload(at, f"{prefix}_upload", filename, data, "application/octet-stream")
    if prefix == "data_csv":
        at.text_input(key="data_csv_target").set_value(target)
    at.button(key=f"{prefix}_import").click().run()
    assert_clean(at)
    assert at.error, f"{case}: no error shown"
    assert all(len(e.value) > 20 for e in at.error)  # a sentence, not a code
    assert snapshot(home) == before
    assert set(at.selectbox(key="data_dataset").options) == names
    assert not list(Path(home).glob("**/.import-*"))


def test_folder_import_and_delete(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "flowers"
    for cls, color in (("rose", 30), ("tulip", 220)):
        (source / cls).mkdir(parents=True)
        for i in range(6):
            (source / cls / f"{i}.png").write_bytes(png(color + i))
    at = open_page("pages/data.py")
    at.text_input(key="data_folder_path").set_value(str(tmp_path / "missing")).run()
    at.button(key="data_folder_import").click().run()
    assert any("not a folder" in e.value for e in at.error)
    at.text_input(key="data_folder_path").set_value(str(source)).run()
    at.button(key="data_folder_import").click().run()
    assert_clean(at)
    assert at.selectbox(key="data_dataset").value == "flowers"
    at.button(key="data_delete").click().run()
    at.button(key="data_delete_yes").click().run()
    assert_clean(at)
    assert "flowers" not in at.selectbox(key="data_dataset").options
    assert not (home / "datasets" / "flowers").exists()


def test_augmentation_preview_draws_the_same_image(home: Path) -> None:
    at = open_page("pages/data.py")
    images_before = len(at.image)
    at.multiselect(key="data_aug").set_value(["rotate", "crop"])
    at.button(key="FormSubmitter:data_aug_form-Preview").click().run()
    assert_clean(at)
    assert not at.error
    assert len(at.image) == images_before + 2  # the original, then a row of 8 draws
