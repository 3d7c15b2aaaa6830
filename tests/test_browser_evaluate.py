"""End to end in a real browser: click a confusion-matrix cell, see that cell's images.

Playwright drives the system Chromium against ``streamlit run app.py`` on a free loopback port
over a workspace holding one small digits run whose test split was evaluated beforehand.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from browser_support import BROWSER_MARKS, open_app
from conftest import train_run

from core.analyze.evaluate import evaluate
from core.workspace import Workspace

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("browser_eval_ws")
    with Workspace.open(home) as ws:
        run_id = train_run(ws)
        for split in ("val", "test"):
            evaluate(ws, run_id, split)
    return home, run_id


def test_click_a_confusion_cell_and_see_its_images(evaluated, page, artifacts: Path) -> None:
    home, run_id = evaluated
    with open_app(page, home, f"evaluate?run={run_id}"):
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
