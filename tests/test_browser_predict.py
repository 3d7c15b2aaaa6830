"""End to end in a real browser: upload an image on Predict and see its top-k, then open Explain
and see a Grad-CAM overlay computed by the dashboard's warm model. Nothing is patched.

Playwright drives the system Chromium against ``streamlit run app.py`` on a free loopback port
over a workspace holding one small digits run.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from browser_support import BROWSER_MARKS, open_app
from conftest import train_run

from core.workspace import Workspace

TOP_K = 5

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str, Path]:
    from core.data import load_dataset

    home = tmp_path_factory.mktemp("browser_predict_ws")
    with Workspace.open(home) as ws:
        run_id = train_run(ws, train={"epochs": 2})
        buf = io.BytesIO()
        load_dataset(ws, "digits").raw("test", 1).save(buf, format="PNG")
    image = home / "upload_digit.png"
    image.write_bytes(buf.getvalue())
    return home, run_id, image


def test_predict_an_upload_then_see_its_grad_cam(trained, page, artifacts) -> None:
    home, run_id, image = trained
    with open_app(page, home, f"predict?run={run_id}"):
        page.locator(".st-key-predict_upload input[type=file]").set_input_files(str(image))
        page.wait_for_function(
            "() => !document.querySelector('.st-key-predict_run button').disabled")
        page.locator(".st-key-predict_run button").click()
        card = page.locator(".st-key-predict_card_0")
        card.get_by_text(image.name).wait_for()
        bars = card.locator('[data-testid="stProgress"]')  # the top-k, one labelled bar each
        bars.nth(TOP_K - 1).wait_for()
        assert bars.count() == TOP_K and "%" in bars.first.inner_text()
        page.screenshot(path=str(artifacts / "predict_topk.png"))

        page.locator('[data-testid="stSidebarNav"] a[href$="/explain"]').click()
        page.locator(".st-key-explain_run button").click()
        result = page.locator(".st-key-explain_result_gradcam")
        result.locator(".js-plotly-plot .heatmaplayer").first.wait_for(timeout=150_000)
        assert result.locator(".js-plotly-plot .colorbar").count() >= 1
        # The map is shown as a preview first; its checks arrive after it.
        result.get_by_text("Sanity check").first.wait_for(timeout=150_000)
        page.screenshot(path=str(artifacts / "explain_gradcam.png"))
    from core.runs.store import Store

    with Store(home) as store:  # Grad-CAM is light: the page computed it, no job
        assert store.latest_job(run_id, "explain") is None
