"""End to end in a real browser: click a confusion-matrix cell, see that cell's images.

Playwright drives the system Chromium against ``streamlit run`` on a free loopback port over a
workspace holding one small digits run whose test split was evaluated beforehand. When app.py
lists the Evaluate page the test goes through the router (``/evaluate``); until then it serves
``pages/evaluate.py`` as the main script.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, free_port, wait_healthy
from test_evaluate import train_tiny

from core.evaluate import evaluate

ROOT = Path(__file__).resolve().parent.parent
PAGE = "pages/evaluate.py"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install "
                                                "chromium); CI installs it"),
]


@contextmanager
def serve(home: Path, script: str) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "LAB2MARKET_HOME": str(home), "PYTHONPATH": str(ROOT)}
    log = open(home / f"streamlit-{port}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("browser_eval_ws")
    run_id = train_tiny(home)
    for split in ("val", "test"):
        evaluate(run_id, home, split)
    return home, run_id


def test_click_a_confusion_cell_and_see_its_images(evaluated, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    home, run_id = evaluated
    routed = PAGE in (ROOT / "app.py").read_text()
    artifacts = Path(os.environ.get("LAB2MARKET_ARTIFACTS") or tmp_path)
    with serve(home, "app.py" if routed else PAGE) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.set_default_timeout(60_000)
            page.goto(f"{url}/evaluate?run={run_id}" if routed else f"{url}/?run={run_id}")
            page.locator('[data-testid="stMetric"]').first.wait_for()  # first run done
            gallery = open_tab(page, "Confusion matrix", ".st-key-eval_cell_gallery")
            before = gallery.inner_text()
            k = 1 if "true 0 · predicted 0" in before else 0  # a cell other than the default
            target = str(k)
            click_cell(page, row=k, col=k, n=10)
            gallery.get_by_text(f"true {target} · predicted {target}").wait_for()
            found = re.search(r"(\d+) samples?", gallery.inner_text())
            assert found and int(found.group(1)) > 0
            expected = min(int(found.group(1)), 24)
            images = gallery.locator("img")
            deadline = time.monotonic() + 30  # the rerun streams its elements in
            while images.count() != expected and time.monotonic() < deadline:
                page.wait_for_timeout(200)
            assert images.count() == expected
            page.screenshot(path=str(artifacts / "evaluate_cell.png"))
        finally:
            browser.close()


def open_tab(page, label: str, content: str):
    """Click a tab until its content shows (a click during a rerun can be lost)."""
    found = page.locator(content)
    for _ in range(3):
        page.get_by_role("tab", name=label).click()
        try:
            found.wait_for(timeout=15_000)
            return found
        except Exception:  # noqa: BLE001 - retried, then the last wait raises
            continue
    found.wait_for()
    return found


def click_cell(page, row: int, col: int, n: int) -> None:
    """Click the centre of a confusion-matrix cell (plotly's plot area is ``.nsewdrag``)."""
    chart = page.locator(".st-key-eval_confusion")
    area = chart.locator(".nsewdrag").first
    area.wait_for()
    box = area.bounding_box()
    x = box["x"] + (col + 0.5) * box["width"] / n
    y = box["y"] + (row + 0.5) * box["height"] / n
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # plotly clicks the point it last hovered
        page.mouse.move(x, y)
        page.wait_for_timeout(300)
        page.mouse.click(x, y)
        try:
            page.locator(".st-key-eval_cell_gallery").get_by_text(
                f"true {row} · predicted {col}").wait_for(timeout=5_000)
            return
        except Exception:  # noqa: BLE001 - retry: the first click can land before hover
            continue
