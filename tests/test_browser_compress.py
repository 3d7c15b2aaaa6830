"""End to end in a real browser: prune a digits run from the Compress page and see its row.

Playwright drives the system Chromium against ``streamlit run app.py`` on a free loopback port
over a workspace holding one small digits run. Nothing is patched: the prune is a real
background job that fine-tunes the pruned network.
"""

from __future__ import annotations

from pathlib import Path

from browser_support import BROWSER_MARKS, open_app
from conftest import wait_for

from core.runs.store import Store

pytestmark = BROWSER_MARKS


def test_prune_a_run_and_see_the_new_row(trained_home, page, artifacts: Path) -> None:
    home, run_id = trained_home
    with open_app(page, home, f"compress?run={run_id}"):
        table = page.locator(".st-key-compress_table")
        table.wait_for()
        page.get_by_role("button", name="Prune").click()
        # The new run is recorded at once; the page shows its job, then its row.
        store = Store(home)
        child = wait_for(lambda: store.child_runs(run_id, kind="pruned"), timeout=60,
                         message="the pruned run")[0]
        wait_for(lambda: store.get_run(child.id).status == "completed", timeout=240,
                 message="the pruned run to finish")
        page.get_by_text("completed: measure the variants").wait_for(timeout=60_000)
        page.screenshot(path=str(artifacts / "compress_pruned.png"), full_page=True)
        # The grid draws on a canvas; its accessible table underneath holds the cells' text.
        grid = table.locator("table")
        html = grid.first.inner_html() if grid.count() else ""
        assert child.id in html and run_id in html, html[:500]
        store.close()
