"""End to end in a real browser: upload an image on Predict and see its top-k, then open Explain
and see a Grad-CAM overlay computed by a real background task. Nothing is patched.

Until ``app.py`` registers the two pages, the test serves a copy of the router with them added
(so it exercises the same sidebar, state and pages); once they are registered it serves app.py.
"""

from __future__ import annotations

import io
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

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--headless"]
TOP_K = 5

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install "
                                                "chromium); CI installs it"),
]


def router(folder: Path) -> Path:
    """app.py if it lists the Predict and Explain pages, else a copy of it that does."""
    text = (ROOT / "app.py").read_text()
    if "pages/predict.py" in text and "pages/explain.py" in text:
        return ROOT / "app.py"
    text = text.replace('st.Page("pages/', f'st.Page("{ROOT}/pages/')
    added = (f'    "Use": [st.Page("{ROOT}/pages/predict.py", title="Predict"),\n'
             f'            st.Page("{ROOT}/pages/explain.py", title="Explain")],\n')
    text = text.replace("pages = {\n", "pages = {\n" + added, 1)
    assert added in text, "app.py no longer builds a `pages = {` dict: update this test"
    path = folder / "app_with_predict_explain.py"
    path.write_text(text)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(home: Path, script: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "LAB2MARKET_HOME": str(home), "PYTHONPATH": str(ROOT)}
    log = open(home / f"streamlit-{port}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"streamlit exited with {proc.returncode}"
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "streamlit did not start in 60 s"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str, Path]:
    from core.config import RunConfig
    from core.data import load_dataset
    from core.jobs import create_run
    from core.store import Store
    from core.train import execute_run

    home = tmp_path_factory.mktemp("browser_predict_ws")
    config = RunConfig()
    config.train.epochs = 2
    run = create_run(Store(home), config)
    assert execute_run(run.id, home)["status"] == "completed"
    image = home / "upload_digit.png"
    buf = io.BytesIO()
    load_dataset("digits", home).raw("test", 1).save(buf, format="PNG")
    image.write_bytes(buf.getvalue())
    return home, run.id, image


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("LAB2MARKET_ARTIFACTS") or tmp_path_factory.mktemp("browser"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {folder}")
    return folder


def test_predict_an_upload_then_see_its_grad_cam(trained, artifacts, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    home, run_id, image = trained
    with serve(home, router(tmp_path)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1800}).new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{url}/predict?run={run_id}")
            page.locator(".st-key-predict_upload input[type=file]").set_input_files(str(image))
            page.wait_for_function(
                "() => !document.querySelector('.st-key-predict_run button').disabled")
            page.locator(".st-key-predict_run button").click()
            card = page.locator(".st-key-predict_card_0")
            card.get_by_text(image.name).wait_for()
            card.locator(".js-plotly-plot .bars .point").nth(TOP_K - 1).wait_for()
            assert card.locator(".js-plotly-plot .bars .point").count() == TOP_K
            page.screenshot(path=str(artifacts / "predict_topk.png"))

            page.locator('[data-testid="stSidebarNav"] a[href$="/explain"]').click()
            page.locator(".st-key-explain_run button").click()
            result = page.locator(".st-key-explain_result_gradcam")
            result.locator(".js-plotly-plot .heatmaplayer").first.wait_for(timeout=150_000)
            assert result.locator(".js-plotly-plot .colorbar").count() >= 1
            assert "Sanity check" in result.inner_text()
            page.screenshot(path=str(artifacts / "explain_gradcam.png"))
        finally:
            browser.close()
    from core.store import Store

    task = Store(home).latest_task(run_id, "explain")
    assert task is not None and task.status == "completed", task and task.error
