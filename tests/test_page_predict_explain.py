"""AppTest for the Predict and Explain pages, over real trained runs (trained once per module).

The pages run in-process against a workspace of their own; the Explain page computes Grad-CAM
with its warm model and reads the cached result (tests/test_page_explain_warm.py covers the
background job of a heavy method).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import assert_clean, frame_with, run_python, train_run
from conftest import open_page as open_routed
from streamlit.testing.v1 import AppTest

from core.data import load_dataset
from core.workspace import Workspace

TIMEOUT = 120


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Iterator[tuple[Workspace, str, str]]:
    with Workspace.open(tmp_path_factory.mktemp("pages_ws")) as ws:
        yield (ws, train_run(ws, train={"epochs": 2}),
               train_run(ws, data={"dataset": "iris"}, model={"name": "mlp"},
                         train={"epochs": 4}))


@pytest.fixture
def env(trained, monkeypatch):
    monkeypatch.setenv("LAB2MARKET_HOME", str(trained[0].home))
    return trained


def open_page(name: str, **state) -> AppTest:
    """``pages/NAME.py`` through the router."""
    return open_routed(f"pages/{name}.py", timeout=TIMEOUT, **state)


def png(index: int, ws: Workspace) -> bytes:
    buf = io.BytesIO()
    load_dataset(ws, "digits").raw("test", index).save(buf, format="PNG")
    return buf.getvalue()


def charts(at: AppTest) -> list[str]:
    return [c.key or "" for c in at.get("plotly_chart")] if hasattr(at, "get") else []


@pytest.mark.parametrize("name", ["predict", "explain"])
def test_pages_without_a_trained_run(tmp_path, monkeypatch, name):
    monkeypatch.setenv("LAB2MARKET_HOME", str(tmp_path))
    at = open_page(name)
    assert any("No trained run" in i.value for i in at.info)


def test_first_load_imports_no_torch(env):
    ws, digits, _ = env
    code = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        "for page in ('pages/predict.py', 'pages/explain.py'):\n"
        "    at = AppTest.from_file('app.py', default_timeout=60)\n"
        f"    at.session_state['active_run'] = {digits!r}\n"
        "    at.run(); at.switch_page(page); at.run()\n"
        "    assert not at.exception, at.exception\n"
        "print('torch' in sys.modules)\n"
    )
    assert run_python(code, ws.home, timeout=180) == "False"


def test_predict_page_uploads_with_a_bad_file(env):
    ws, digits, _ = env
    at = open_page("predict", active_run=digits)
    at.file_uploader(key="predict_upload").set_value(
        [("digit.png", png(1, ws), "image/png"), ("broken.png", b"not an image", "image/png")])
    at.run()
    at.slider(key="predict_top_k").set_value(3)
    at.button(key="predict_run").click().run()
    assert_clean(at)
    assert [e.value for e in at.error] == [
        "broken.png: broken.png is not a readable image in an allowed format "
        "(PNG, JPEG, WEBP, BMP, GIF, TIFF)."]
    table = frame_with(at, "file")
    assert list(table["file"]) == ["digit.png", "broken.png"]
    assert table["error"][0] == "" and table["top 3"][0].count(",") == 2
    bars = [b.proto.text for b in at.get("progress")]  # the card's top 3, most probable first
    assert len(bars) == 3 and all(text.endswith("%") for text in bars), bars
    assert table["top 3"][0].split(" ")[0] == bars[0].split(" ")[0]
    assert at.get("download_button")


def test_predict_page_test_examples(env):
    ws, digits, _ = env
    at = open_page("predict", active_run=digits)
    at.number_input(key="predict_examples").set_value(4).run()
    at.button(key="predict_run").click().run()
    assert_clean(at)
    table = frame_with(at, "file")
    assert list(table["file"]) == load_dataset(ws, "digits").ids("test")[:4]
    assert table["probability"].between(0, 1).all()


def test_predict_page_table_form_and_csv(env):
    ws, _, iris = env
    at = open_page("predict", active_run=iris)
    at.button(key="FormSubmitter:predict_row_form-Predict this row").click().run()
    assert_clean(at)
    assert list(frame_with(at, "file")["file"]) == ["form row"]
    at.file_uploader(key="predict_csv").set_value(("wrong.csv", b"a,b\n1,2\n", "text/csv"))
    at.run()
    at.button(key="predict_csv_run").click().run()
    assert_clean(at)
    assert any("wrong.csv lacks the columns" in e.value for e in at.error)


def test_explain_page_explains_the_sample_sent_from_evaluate(env):
    ws, digits, _ = env
    request = {"run_id": digits, "split": "test", "index": 4, "sample_id": "test/00004"}
    at = open_page("explain", explain_request=request)
    assert at.session_state["active_run"] == digits
    assert at.number_input(key="explain_index").value == 4
    assert at.multiselect(key="explain_methods").value == ["gradcam"]
    at.button(key="explain_run").click().run()  # Grad-CAM: computed by the page itself
    assert_clean(at)
    assert "explain_result_gradcam_overlay" in charts(at)
    assert "explain_result_gradcam_deletion" in charts(at)
    assert any("Sanity check" in m.value for m in [*at.success, *at.warning])
    assert at.button(key="explain_run").disabled  # cached: nothing left to compute
    label = load_dataset(ws, "digits").labels("test")[4]
    predicted = [c.value for c in at.caption if c.value.startswith("Predicted:")]
    assert predicted and "not predicted yet" not in predicted[0]
    assert f"{label}:" in at.selectbox(key="explain_target").format_func(int(label))


def test_explain_page_refuses_a_bad_upload(env):
    _, digits, _ = env
    at = open_page("explain", active_run=digits)
    at.radio(key="explain_source").set_value("Upload").run()
    at.file_uploader(key="explain_upload").set_value(("x.png", b"\x89PNG\r\n\x1a\ncut",
                                                      "image/png"))
    at.run()
    assert_clean(at)
    assert any("x.png" in e.value and "damaged" in e.value for e in at.error)


def test_explain_page_table_with_cached_results(env):
    """Results computed in-process with the page's parameters: the page only reads them."""
    from core.explain import effective_params
    from core.explain.cache import row_sha
    from core.explain.runner import explain_input, explain_summary
    from core.models.loaded import load_run

    ws, _, iris = env
    loaded = load_run(ws, iris)
    row = load_dataset(ws, "iris").raw("test", 0)
    x = loaded.preprocess(row)
    result = explain_input(loaded, x, row_sha(row), row, "shap")
    explain_summary(loaded, result.target, rows=100, params=effective_params("shap", "tabular"))
    at = open_page("explain", active_run=iris)
    assert_clean(at)
    keys = charts(at)
    assert "explain_result_shap_bars" in keys and "explain_beeswarm" in keys
    assert np.isfinite(result.attributions).all()
