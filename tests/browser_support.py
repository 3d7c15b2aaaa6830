"""What the browser tests share: ``streamlit run app.py`` on a free loopback port over a
workspace, and the system Chromium driven by Playwright (never a browser of Playwright's own).

The launch code itself is ``browser_launch`` (no pytest: ``docs/screenshots.py`` and the
benchmarks use it too). The fixtures built on these (``browser``, ``page``, ``artifacts``) are in
conftest.py.
"""

from __future__ import annotations

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
