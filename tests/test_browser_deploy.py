"""End to end in a real browser: export a digits run from the Deploy page, download the bundle.

Playwright drives the system Chromium against ``streamlit run`` on a free loopback port over a
workspace holding one small digits run. Nothing is patched: the export is a real background
task, the download a real zip checked file by file. When app.py lists the Deploy page the test
goes through the router (``/deploy``); until then it serves ``pages/deploy.py`` as the main
script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, free_port, wait_healthy
from test_export import train

from core.deploy.runtime import sha256_bytes
from core.store import Store

ROOT = Path(__file__).resolve().parent.parent
PAGE = "pages/deploy.py"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install "
                                                "chromium); CI installs it"),
]


@contextmanager
def serve(home: Path, script: str) -> Iterator[str]:
    """``streamlit run SCRIPT`` on a free loopback port over the workspace ``home``."""
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
def trained(tmp_path_factory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("browser_deploy_ws")
    return home, train(home, train={"epochs": 1})


def test_export_a_digits_run_and_download_the_bundle(trained, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    home, run_id = trained
    routed = PAGE in (ROOT / "app.py").read_text()
    artifacts = Path(os.environ.get("LAB2MARKET_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    with serve(home, "app.py" if routed else PAGE) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1800},
                                          accept_downloads=True)
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{url}/deploy?run={run_id}" if routed else f"{url}/?run={run_id}")
            page.locator(".st-key-deploy_export button").click()
            # The export runs in the background; the page redraws when it is done.
            page.locator(".st-key-deploy_download button").wait_for(timeout=180_000)
            assert Store(home).latest_task(run_id, "export").status == "completed"
            page.screenshot(path=str(artifacts / "deploy_exported.png"), full_page=True)
            with page.expect_download(timeout=60_000) as download:
                page.locator(".st-key-deploy_download button").click()
            target = tmp_path / "bundle.zip"
            download.value.save_as(target)
        finally:
            browser.close()
    with zipfile.ZipFile(target) as zf:
        names = {Path(n).name: n for n in zf.namelist()}
        assert {"manifest.json", "model.onnx", "labels.json", "preprocess.json", "Dockerfile",
                "requirements.txt", "serve.py", "runtime.py", "model_card.md"} <= set(names)
        manifest = json.loads(zf.read(names["manifest.json"]))
        for name, entry in manifest["files"].items():  # every file as exported
            assert sha256_bytes(zf.read(names[name])) == entry["sha256"], name
    assert manifest["run_id"] == run_id and manifest["bundle"] == "onnx-fp32"
