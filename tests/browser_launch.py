"""Launching the real app and a real browser: ``streamlit run app.py`` on a free loopback port
over a workspace, and the system Chromium driven by Playwright (never a browser of Playwright's
own). Standard library and Playwright only, no pytest: the browser tests
(``browser_support``), the benchmarks and ``docs/screenshots.py`` share it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--headless"]
VIEWPORT = {"width": 1400, "height": 1800}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until the Streamlit server at ``url`` answers its health check (it must not exit)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"streamlit did not answer on {url} within {timeout}s")


@contextmanager
def streamlit_app(home: Path, script: Path = ROOT / "app.py", **env: str) -> Iterator[str]:
    """``streamlit run app.py`` on a free loopback port over the workspace ``home``; yields its URL
    once it answers, stops it on exit. ``env``: more environment variables for the server (and
    the jobs it starts). Its output goes to ``streamlit-PORT.log`` in ``home``.

    ``script``: another app to run the same way, from its own folder (whose ``.streamlit/`` config
    applies), e.g. the empty app a benchmark measures as the floor of a page load."""
    port = free_port()
    env = {**os.environ, "LAB2MARKET_HOME": str(home), **env}
    log = open(home / f"streamlit-{port}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script.name, "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=script.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
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


@contextmanager
def chromium() -> Iterator:
    """The system Chromium (``CHROMIUM``), launched by Playwright and closed on exit."""
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:
        raise RuntimeError("Chromium is not installed (apt-get install chromium).")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def new_page(browser, timeout_ms: float = 30_000, **context_options) -> Iterator:
    """A page in a new context of ``browser`` (``VIEWPORT`` unless given), closed on exit."""
    context = browser.new_context(**{"viewport": VIEWPORT, **context_options})
    try:
        page = context.new_page()
        page.set_default_timeout(timeout_ms)
        yield page
    finally:
        context.close()


# The number of points a Plotly chart draws, read from the chart itself (its traces as Plotly
# holds them after defaults), not from a caption that could disagree with it.
PLOTLY_POINTS_JS = """(el) => {
  const plot = el.querySelector('.js-plotly-plot');
  if (!plot || !plot._fullData) return -1;
  return plot._fullData.reduce((n, t) => n + (t._length ?? (t.x ? t.x.length : 0)), 0);
}"""


def plotly_points(page, key: str) -> int:
    """Points drawn by the Plotly chart of the element with Streamlit key ``key`` (-1: none)."""
    locator = page.locator(f".st-key-{key}")
    if locator.count() == 0:
        return -1
    return int(locator.first.evaluate(PLOTLY_POINTS_JS))


def digit_pngs(home: Path, folder: Path, indices: range, prefix: str = "digit_") -> list[Path]:
    """Digits test images ``indices`` of the workspace ``home`` as PNG files a user would
    upload, written into ``folder`` as ``PREFIX<index>.png``."""
    import io

    from core.data import load_dataset
    from core.workspace import Workspace

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with Workspace.open(home) as ws:
        dataset = load_dataset(ws, "digits")
        for i in indices:
            buf = io.BytesIO()
            dataset.raw("test", i).save(buf, format="PNG")
            path = folder / f"{prefix}{i}.png"
            path.write_bytes(buf.getvalue())
            paths.append(path)
    return paths
