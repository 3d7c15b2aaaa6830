"""End to end in a real browser: launch a small study on the Tune page and watch its trials
table fill in while the trials train as real background jobs (nothing patched)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from browser_support import BROWSER_MARKS

pytestmark = BROWSER_MARKS


def grid_rows(page) -> int:
    """Data rows of the trials table (the grid's accessible row count, minus its header)."""
    grid = page.locator(".st-key-tune_trials_table [role=grid]")
    if not grid.count():
        return 0
    return max(0, int(grid.first.get_attribute("aria-rowcount") or 1) - 1)


def test_launch_a_small_study_and_see_the_trials_table_fill(app, page, artifacts: Path) -> None:
    url, home = app
    page.goto(f"{url}/tune")
    page.locator(".st-key-tune_epochs input").wait_for()
    page.locator(".st-key-tune_epochs input").fill("1")
    page.locator(".st-key-tune_trials input").fill("2")
    page.get_by_role("button", name="Launch study").click()

    seen: list[tuple[str, int]] = []  # (progress text, table rows) over time
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        progress = page.locator(".stProgress").first
        text = progress.inner_text() if progress.count() else ""
        seen.append((text, grid_rows(page)))
        if re.search(r"2 of 2 trials ended", text):
            break
        time.sleep(0.5)
    assert seen and "2 of 2 trials ended" in seen[-1][0], seen[-5:]
    page.locator(".st-key-tune_status", has_text="completed").wait_for(timeout=30_000)
    page.wait_for_function("() => document.querySelector('.st-key-tune_trials_table [role=grid]')"
                           "?.getAttribute('aria-rowcount') === '3'", timeout=30_000)
    assert min(rows for _, rows in seen) < 2  # the table grew while the study ran
    page.locator(".st-key-tune_chart .scatterlayer .trace").first.wait_for(timeout=30_000)
    page.screenshot(path=str(artifacts / "tune_study.png"), full_page=True)
