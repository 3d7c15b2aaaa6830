"""What the browser tests share: ``streamlit run app.py`` on a free loopback port over a
workspace, and the system Chromium driven by Playwright (never a browser of Playwright's own).

The launch code itself is ``browser_launch`` (no pytest: ``docs/screenshots.py`` and the
benchmarks use it too). The fixtures built on these (``browser``, ``page``, ``artifacts``, ``app``,
``trained_home``) are in conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser_launch import (  # noqa: F401  (re-exported: the tests import them from here)
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORT,
    chromium,
    new_page,
    plotly_points,
    streamlit_app,
    wait_healthy,
)

# The marks of every browser test module (``pytestmark = BROWSER_MARKS``).
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install "
                                                "chromium); CI installs it"),
]

# One torch thread per job (inherited from the server): on a 2-core runner a job with two threads
# fights the browser and the server and runs many times slower.
SERVER_ENV = {"OMP_NUM_THREADS": "1"}


def stop_jobs(home: Path) -> None:
    """Cancel the runs still active in ``home``: background jobs outlive the server by design,
    and a test must not leave one running."""
    from core import runs
    from core.runs.store import Store

    with Store(home) as store:
        for run in store.active_runs():
            runs.cancel(store, run.id, timeout=10)


@contextmanager
def open_app(page, home: Path, path: str, timeout_ms: float = 60_000) -> Iterator[str]:
    """The app served over ``home`` (``streamlit_app``) with ``path`` (e.g. ``deploy?run=ID``)
    open in ``page``, whose default timeout becomes ``timeout_ms``; yields the app's URL."""
    with streamlit_app(home) as url:
        page.set_default_timeout(timeout_ms)
        page.goto(f"{url}/{path}")
        yield url
