"""The Explain page's warm path: a light method (Grad-CAM) is computed in the dashboard's process
with its cached model, with no job; a heavy one (image LIME) still goes to a background job; both
store the result the CLI finds, and ``python -m core explain`` reads a cached result back without
importing torch.

Real pieces only: a digits run trained here, AppTest through the router, the real store, the CLI
in a subprocess.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import assert_clean, open_page, run_python, train_run, wait_for

from core.explain.cache import explain_dir, load_explanation
from core.explain.light import is_light
from core.workspace import Workspace

TIMEOUT = 120


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Iterator[tuple[Workspace, str, str, str]]:
    """Two digits runs (one to explain, one whose checkpoint a test damages) and an iris run."""
    with Workspace.open(tmp_path_factory.mktemp("warm_ws")) as ws:
        yield ws, train_run(ws), train_run(ws), train_run(
            ws, data={"dataset": "iris"}, model={"name": "mlp"}, train={"epochs": 2})


@pytest.fixture
def env(trained, monkeypatch):
    monkeypatch.setenv("LAB2MARKET_HOME", str(trained[0].home))
    return trained


def explain_page(run_id: str, index: int):
    request = {"run_id": run_id, "split": "test", "index": index, "sample_id": f"test/{index}"}
    return open_page("pages/explain.py", timeout=TIMEOUT, explain_request=request)


def charts(at) -> list[str]:
    return [c.key or "" for c in at.get("plotly_chart")]


def stored(ws: Workspace, run_id: str, method: str) -> list:
    folder = explain_dir(ws, run_id)
    return [load_explanation(ws, run_id, method, p.stem.split("-", 1)[1])
            for p in sorted(folder.glob(f"{method}-*.json"))]


def cli_explain_loads_torch(ws: Workspace, run_id: str, file: str, *flags: str) -> bool:
    """Run ``python -m core explain`` (Grad-CAM) in a fresh interpreter: did it import torch?"""
    argv = ["explain", run_id, file, "--method", "gradcam", "--json", "--home", str(ws.home),
            *flags]
    code = ("import json, sys\n"
            "from core.cli.main import main\n"
            f"assert main({argv!r}) == 0\n"
            "print(json.dumps('torch' in sys.modules))\n")
    return json.loads(run_python(code, ws.home, timeout=180))


def test_the_rule_sends_light_methods_here_and_heavy_ones_to_a_job():
    assert is_light("gradcam", "image") and is_light("ig", "image") and is_light("shap", "image")
    assert not is_light("lime", "image")  # hundreds of forward passes even at its default
    assert not is_light("ig", "image", {"n_steps": 256})
    assert is_light("shap", "image", pixels=64 * 64)
    assert not is_light("shap", "image", pixels=224 * 224)  # tens of seconds on a CPU
    assert not is_light("gradcam", "image", networks=3)  # an ensemble: one map per member
    assert not is_light("shap", "tabular", inputs=100)  # the global summary


def test_grad_cam_is_computed_here_and_the_cli_reads_it_back_without_torch(env):
    ws, run_id, _, _ = env
    at = explain_page(run_id, 3)
    at.button(key="explain_run").click().run()
    assert_clean(at)
    assert ws.store.list_jobs(run_id=run_id) == []  # no job: computed in this process
    assert {"explain_result_gradcam_overlay", "explain_result_gradcam_deletion"} <= set(
        charts(at))
    assert at.button(key="explain_run").disabled  # cached now: nothing left to compute
    [result] = stored(ws, run_id, "gradcam")
    assert result.sanity and result.deletion["deletion_probs"].size  # with its trust checks

    saved = next((explain_dir(ws, run_id) / "inputs").glob("*.png"))
    # A cache hit: no torch, no model load, no prediction. Recomputed (--no-cache) by the
    # job's path, the same cache entry gets the same values.
    assert cli_explain_loads_torch(ws, run_id, str(saved)) is False
    assert cli_explain_loads_torch(ws, run_id, str(saved), "--no-cache") is True
    [again] = stored(ws, run_id, "gradcam")
    assert again.key == result.key and again.sanity == result.sanity
    np.testing.assert_allclose(again.attributions, result.attributions, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(again.deletion["deletion_probs"],
                               result.deletion["deletion_probs"], rtol=1e-5, atol=1e-7)


def test_lime_goes_to_a_job_while_grad_cam_is_computed_here(env):
    ws, run_id, _, _ = env
    at = explain_page(run_id, 5)
    at.multiselect(key="explain_methods").set_value(["gradcam", "lime"]).run()
    at.number_input(key="explain_lime_num_samples").set_value(50).run()
    at.button(key="explain_run").click().run()
    assert_clean(at)
    [job] = ws.store.list_jobs(run_id=run_id)
    assert "lime" in job.argv and "gradcam" not in " ".join(job.argv)
    assert "explain_result_gradcam_overlay" in charts(at)
    done = wait_for(lambda: (j := ws.store.get_job(job.id)) and not j.is_active and j,
                    timeout=TIMEOUT, interval=0.25, message="the LIME job")
    assert done.status == "completed", done.error
    at.run()
    assert_clean(at)
    assert {"explain_result_gradcam_overlay", "explain_result_lime_overlay"} <= set(charts(at))


def test_a_damaged_checkpoint_is_one_line_and_nothing_is_stored(env):
    ws, _, damaged, _ = env
    checkpoint = ws.run_dir(damaged) / "checkpoints" / "best.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:200])
    at = explain_page(damaged, 0)
    at.button(key="explain_run").click().run()
    assert_clean(at)
    [error] = [e.value for e in at.error]
    assert "damaged" in error and "\n" not in error
    assert stored(ws, damaged, "gradcam") == [] and ws.store.list_jobs(run_id=damaged) == []


def test_a_table_row_is_explained_here_and_the_summary_by_a_job(env):
    ws, _, _, iris = env
    at = open_page("pages/explain.py", timeout=TIMEOUT, active_run=iris)
    at.multiselect(key="explain_methods").set_value(["shap", "lime"]).run()
    at.button(key="explain_run").click().run()  # both light for one row
    assert_clean(at)
    assert ws.store.list_jobs(run_id=iris) == []
    assert {"explain_result_shap_bars", "explain_result_lime_bars"} <= set(charts(at))
    at.button(key="explain_summary").click().run()  # 100 rows: a job
    assert_clean(at)
    [job] = ws.store.list_jobs(run_id=iris)
    done = wait_for(lambda: (j := ws.store.get_job(job.id)) and not j.is_active and j,
                    timeout=TIMEOUT, interval=0.25, message="the summary job")
    assert done.status == "completed", done.error
    at.run()
    assert "explain_beeswarm" in charts(at)
