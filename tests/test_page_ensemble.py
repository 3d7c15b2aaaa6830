"""AppTest of the Ensemble page: build an ensemble from the page (a real background job), the
diversity view (heatmap, accuracy bars, the sentence), mixed datasets refused with the reason,
links to Evaluate, and no torch import.

Three one-epoch digits runs (seeds 0-2) and one wine run are shared by the module.
"""

from __future__ import annotations

import json

import pytest
from conftest import (
    assert_clean,
    frame_with,
    heavy_modules_after_page,
    open_page,
    train_run,
    wait_for,
)

from core.workspace import Workspace

PAGE = "pages/ensemble.py"


@pytest.fixture(scope="module")
def members(ws: Workspace) -> list[str]:
    return [train_run(ws, train={"seed": seed}) for seed in (0, 1, 2)]


@pytest.fixture(scope="module")
def wine(ws: Workspace) -> str:
    return train_run(ws, data={"dataset": "wine"}, model={"name": "mlp"})


@pytest.fixture(scope="module")
def built(ws: Workspace, members: list[str]) -> str:
    """An ensemble built from the page (weighted), its job awaited; returns its run id."""
    at = open_page(PAGE, active_run=members[0])
    assert sorted(at.multiselect(key="ensemble_members").value) == sorted(members)
    at.radio(key="ensemble_method").set_value("weighted")
    at.text_input(key="ensemble_name").set_value("three seeds")
    at.button(key="ensemble_build").click().run()
    assert_clean(at)
    job = ws.store.latest_job(members[0], "ensemble")
    assert job is not None and job.key == "weighted"
    done = wait_for(lambda: (j := ws.store.get_job(job.id)).status not in ("queued", "running")
                    and j, timeout=180, interval=0.25, message="the ensemble job")
    assert done.status == "completed", done.error
    at.run()
    assert_clean(at)
    run_id = done.result["run_id"]
    assert at.session_state["active_run"] == run_id  # the new ensemble is picked
    assert any("Built the ensemble" in s.value for s in at.success)
    return run_id


def charts(at) -> dict[str, dict]:
    return {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def test_diversity_view_of_the_built_ensemble(ws: Workspace, members: list[str],
                                              built: str) -> None:
    run = ws.store.get_run(built)
    assert run.kind == "ensemble" and run.name == "three seeds"
    at = open_page(PAGE, active_run=built)
    assert at.selectbox(key="ensemble_view").value == built
    found = charts(at)
    heat = found["ensemble_disagreement"]["data"][0]
    assert heat["type"] == "heatmap" and len(heat["z"]) == 3
    assert all(heat["z"][i][i] == 0 for i in range(3))
    bars = found["ensemble_accuracy"]["data"][0]
    assert bars["type"] == "bar" and len(bars["y"]) == 4  # three members and the ensemble
    assert any("w " in t for t in bars["text"])  # weighted: the fitted weights are shown
    table = frame_with(at, "Test accuracy")
    assert sorted(table["Run"][:3]) == sorted(members)
    assert list(table["Run"][:3]) == run.config["ensemble"]["members"]
    assert abs(table["Weight"][:3].sum() - 1) < 1e-6
    assert any("disagree on" in c.value and "best member" in c.value for c in at.caption)


def test_open_the_ensemble_on_evaluate(built: str) -> None:
    at = open_page(PAGE, active_run=built)
    at.button(key="ensemble_open_evaluate").click().run()
    assert_clean(at)
    assert [t.value for t in at.title] == ["Evaluate"]
    assert at.session_state["active_run"] == built


def test_mixed_datasets_disable_the_button_with_the_reason(members: list[str],
                                                           wine: str) -> None:
    at = open_page(PAGE, active_run=members[0])
    at.multiselect(key="ensemble_members").set_value([members[0], wine]).run()
    assert_clean(at)
    assert at.button(key="ensemble_build").disabled
    assert any("share one dataset" in c.value and "wine" in c.value for c in at.caption)
    at.multiselect(key="ensemble_members").set_value([members[0]]).run()
    assert at.button(key="ensemble_build").disabled
    assert any("at least two" in c.value for c in at.caption)


def test_the_page_never_imports_torch(ws: Workspace, built: str) -> None:
    loaded = heavy_modules_after_page(
        PAGE, ws.home, built, "assert at.get('plotly_chart'), 'the diversity view was not drawn'")
    assert loaded == {"torch": False}
