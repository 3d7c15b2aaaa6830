"""End to end in a real browser: Playwright drives the system Chromium against `streamlit run`.

Nothing is patched: the app runs as a server on a free loopback port over a fresh workspace, the
training run is a real background job. Screenshots go to ``$LAB2MARKET_ARTIFACTS`` (else a
``browser`` folder in pytest's temporary directory, whose path the test prints).
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import numpy as np
from browser_support import BROWSER_MARKS, SERVER_ENV, plotly_points, streamlit_app
from PIL import Image

pytestmark = BROWSER_MARKS

def wait_points(page, n: int, timeout_s: float = 60) -> None:
    """Until the loss chart draws ``n`` points (counted from its Plotly traces)."""
    deadline = time.monotonic() + timeout_s
    while plotly_points(page, "train_loss_chart") < n:
        assert time.monotonic() < deadline, f"the loss chart never drew {n} points"
        time.sleep(0.1)


def text_of(page, selector: str) -> str:
    loc = page.locator(selector)
    return loc.first.inner_text() if loc.count() else ""


EPOCHS = 30


def test_launch_from_train_page_and_watch_the_curve_grow(app, page, artifacts: Path) -> None:
    url, home = app
    page.goto(url)
    page.locator(".st-key-home_quick_start").wait_for()
    page.locator(".st-key-sidebar_workspace", has_text=str(home)).wait_for()
    page.locator('[data-testid="stSidebarNav"] a[href$="/train"]').click()
    page.locator(".st-key-train_epochs input").wait_for()
    # 30 epochs of 79 steps: several seconds on an idle CPU (a warm job starts at once), so the
    # chart updates several times at its 0.5 s refresh while the run trains; minutes on a loaded
    # machine (CI once took 170 s), hence a deadline that moves on while the curve grows.
    page.locator(".st-key-train_epochs input").fill(str(EPOCHS))
    page.locator(".st-key-train_batch_size input").fill("16")
    page.get_by_role("button", name="Launch").click()

    # (status, points the loss chart draws, counted from its Plotly traces) over time; before
    # the first point there is no chart at all (-1), the monitor says what the run waits for.
    counts: list[tuple[str, int]] = []
    hard_deadline = time.monotonic() + 480
    deadline = time.monotonic() + 120  # no new point for this long: the test fails
    shot_while_running = False
    while time.monotonic() < min(deadline, hard_deadline):
        status = text_of(page, ".st-key-train_run_status").strip()
        points = plotly_points(page, "train_loss_chart")
        if status and points >= 0:
            if not counts or points > counts[-1][1]:
                deadline = time.monotonic() + 120
            counts.append((status, points))
            if status == "running" and counts[-1][1] > 0 and not shot_while_running:
                page.screenshot(path=str(artifacts / "train_running.png"))
                shot_while_running = True
        if status == "completed":
            break
        time.sleep(0.25)
    page.screenshot(path=str(artifacts / "train_completed.png"))
    assert counts and counts[-1][0] == "completed", counts[-10:]
    running = [n for status, n in counts if status == "running"]
    assert len(set(running)) >= 2 and max(running) > min(running), (
        f"the loss curve did not grow while running: {counts}")
    # The page redraws once the run has ended; read the finished view, not the element that the
    # redraw is about to replace (bounded).
    expected = EPOCHS * (2 + 7)  # train/loss and val/loss per epoch, a step loss every 10 steps
    final, settle = counts[-1][1], time.monotonic() + 10
    while final < expected and time.monotonic() < settle:
        time.sleep(0.25)
        final = max(final, plotly_points(page, "train_loss_chart"))
    assert final >= expected
    # The chart itself is drawn from the same series: a plotly trace per loss key.
    assert page.locator(".st-key-train_loss_chart .scatterlayer .trace").count() >= 2
    page.locator(".st-key-sidebar_workspace", has_text=str(home)).wait_for()  # on every page


def _imagefolder_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for cls, color in (("cats", 30), ("dogs", 220)):
            for i in range(6):
                buf = io.BytesIO()
                Image.fromarray(np.full((16, 16, 3), color + i, np.uint8)).save(buf, "PNG")
                zf.writestr(f"{cls}/{i}.png", buf.getvalue())
    return path


def test_upload_a_zip_on_the_data_page(app, page, artifacts: Path, tmp_path: Path) -> None:
    url, home = app
    page.goto(f"{url}/data")
    page.locator(".st-key-data_dataset").wait_for()
    archive = _imagefolder_zip(tmp_path / "pets.zip")
    page.locator(".st-key-data_zip_upload input[type=file]").set_input_files(str(archive))
    name = page.locator(".st-key-data_zip_name input")
    name.fill("browser-pets")
    name.press("Enter")
    button = page.locator(".st-key-data_zip_import button")
    page.wait_for_function(
        "() => !document.querySelector('.st-key-data_zip_import button').disabled")
    button.click()
    page.get_by_text("Imported dataset browser-pets").wait_for(timeout=60_000)
    table = page.locator('[data-testid="stTable"]').first
    assert "browser-pets" in table.inner_text()
    page.screenshot(path=str(artifacts / "data_imported.png"))
    assert (home / "datasets" / "browser-pets").is_dir()


def test_a_deep_link_after_a_restart_shows_the_run_live(page, tmp_path: Path) -> None:
    """A tab reopened on /train?run=ID after the server restarted: the app shell and the live run.

    The run is written straight into the store (its pid is this process, so it counts as alive),
    as a job that kept running while the app was down would leave it.
    """
    from core.config import RunConfig
    from core.runs.store import Store

    home = tmp_path / "ws"
    home.mkdir()
    store = Store(home)
    run = store.create_run(RunConfig().to_dict(), name="survivor")
    store.set_status(run.id, "running")
    store.update_run(run.id, pid=os.getpid(), total_steps=1000, step=20)
    store.log_metrics(run.id, [(10, "train/step_loss", 1.0), (20, "train/step_loss", 0.9)])
    try:
        with streamlit_app(home, **SERVER_ENV) as url:
            page.goto(f"{url}/train?run={run.id}")  # the first request after the start
            wait_points(page, 2)
            page.locator(".st-key-sidebar_workspace", has_text=str(home)).wait_for()
            assert "running" in text_of(page, ".st-key-train_run_status")
            store.log_metrics(run.id, [(30, "train/step_loss", 0.8)])
            written = time.monotonic()
            wait_points(page, 3)
            assert time.monotonic() - written < 5  # refreshed every second (benchmarked)
    finally:
        store.set_status(run.id, "completed")
        store.close()
