"""End to end in a real browser: export a digits run from the Deploy page, download the bundle.

Playwright drives the system Chromium against ``streamlit run app.py`` on a free loopback port
over a workspace holding one small digits run. Nothing is patched: the export is a real
background task, the download a real zip checked file by file.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from browser_support import BROWSER_MARKS, open_app

from core.deploy.runtime import sha256_bytes
from core.runs.store import Store

pytestmark = BROWSER_MARKS


def test_export_a_digits_run_and_download_the_bundle(trained_home, page, artifacts: Path,
                                                     tmp_path: Path) -> None:
    home, run_id = trained_home
    with open_app(page, home, f"deploy?run={run_id}"):
        page.locator(".st-key-deploy_export button").click()
        # The export runs in the background; the page redraws when it is done.
        page.locator(".st-key-deploy_download button").wait_for(timeout=180_000)
        assert Store(home).latest_job(run_id, "export").status == "completed"
        page.screenshot(path=str(artifacts / "deploy_exported.png"), full_page=True)
        with page.expect_download(timeout=60_000) as download:
            page.locator(".st-key-deploy_download button").click()
        target = tmp_path / "bundle.zip"
        download.value.save_as(target)
    with zipfile.ZipFile(target) as zf:
        names = {n.split("/", 1)[1]: n for n in zf.namelist()}  # under <run>-<bundle>/
        assert {"manifest.json", "model.onnx", "labels.json", "preprocess.json", "Dockerfile",
                "requirements.txt", "serve.py", "runtime/__main__.py",
                "model_card.md"} <= set(names)
        manifest = json.loads(zf.read(names["manifest.json"]))
        for name, entry in manifest["files"].items():  # every file as exported
            assert sha256_bytes(zf.read(names[name])) == entry["sha256"], name
    assert manifest["run_id"] == run_id and manifest["bundle"] == "onnx-fp32"
