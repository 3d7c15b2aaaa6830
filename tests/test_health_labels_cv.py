"""Likely label errors judged by a cross-validation run: every train and val sample gets an
out-of-sample probability from the fold that did not train on it; the Data page's gallery turns
"exclude" and "relabel" into a new dataset version."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_clean, open_page

from core.config import RunConfig
from core.data import load_dataset
from core.data.health import health_dir, label_report, make_version, stored_label_report
from core.runs import create_run
from core.runs.cv import CV_KIND, FOLD_KIND, fold_runs, sync
from core.train import execute_run
from core.workspace import Workspace

NAME = "digits-flipped"
FLIPS = {"train": 16, "val": 6}  # labels moved to the next digit, in both splits CV judges


def train_cv(ws: Workspace, dataset: str, k: int, epochs: int) -> str:
    """A completed CV parent with ``k`` folds, recorded as ``launch_cv`` records them, each
    fold trained in this process rather than through the queue (seconds, not a job start)."""
    raw = RunConfig().to_dict()
    raw["data"].update(dataset=dataset, cv=k)
    raw["model"]["name"] = "mlp"  # on 8x8 digits: as good a judge as the CNN, faster
    raw["train"].update(epochs=epochs, batch_size=64)
    config = RunConfig.from_dict(raw)
    parent = create_run(ws.store, config, "cv", kind=CV_KIND)
    for i in range(k):
        fold = config.to_dict()
        fold["data"]["fold"] = i
        run = create_run(ws.store, RunConfig.from_dict(fold), f"cv fold {i}", kind=FOLD_KIND,
                         parent_run=parent.id)
        assert execute_run(ws, run.id)["status"] == "completed"
    assert sync(ws.store, parent.id).status == "completed"
    return parent.id


@pytest.fixture(scope="module")
def flipped(ws: Workspace) -> dict:
    """``NAME``: digits with ``FLIPS`` labels moved on, and a 2-fold CV run trained on it."""
    digits = load_dataset(ws, "digits")
    rng = np.random.default_rng(3)
    relabel = {}
    for split, n in FLIPS.items():
        for i in rng.choice(digits.size(split), n, replace=False):
            relabel[split, int(i)] = str((int(digits.labels(split)[i]) + 1) % 10)
    make_version(ws, "digits", NAME, relabel=relabel)
    version = load_dataset(ws, NAME)
    # A version of an in-memory dataset names its files SPLIT-POSITION.png after the original.
    wrong = set()
    for split in FLIPS:
        for sid in version.ids(split):
            origin, position = sid.rsplit("/", 1)[1].removesuffix(".png").split("-")
            if (origin, int(position)) in relabel:
                wrong.add(sid)
    return {"parent": train_cv(ws, NAME, k=2, epochs=2), "wrong": wrong}


def test_a_cv_run_judges_every_train_and_val_sample_out_of_fold(ws: Workspace, flipped: dict):
    assert len(flipped["wrong"]) == sum(FLIPS.values())
    parent = flipped["parent"]
    dataset = load_dataset(ws, NAME)

    report = label_report(ws, NAME, parent)

    assert report["checked"] == dataset.size("train") + dataset.size("val")
    assert report["source"].startswith("2 cross-validation folds")
    assert set(report["signatures"]) == {f.id for f in fold_runs(ws.store, parent)}
    classes = dataset.info.classes
    for item in report["items"]:  # each suggestion points at the sample it is about
        assert item["split"] in ("train", "val")
        assert dataset.ids(item["split"])[item["index"]] == item["id"]
        assert classes[int(dataset.labels(item["split"])[item["index"]])] == item["given"]
    assert len({i["id"] for i in report["items"]}) == len(report["items"])  # once each
    top = {item["id"] for item in report["items"][:2 * len(flipped["wrong"])]}
    found_train = top & {sid for sid in flipped["wrong"] if sid.startswith("train/")}
    assert len(top & flipped["wrong"]) >= len(flipped["wrong"]) / 2
    assert len(found_train) >= FLIPS["train"] / 2  # what a single run's val split never sees
    assert stored_label_report(ws, NAME, parent) == report  # kept, reused


def test_the_gallery_excludes_and_relabels_into_a_new_version(ws: Workspace, flipped: dict):
    parent = flipped["parent"]
    items = label_report(ws, NAME, parent)["items"]  # stored by the test above, else made now
    assert len(items) >= 2
    at = open_page("pages/data.py", data_dataset=NAME, data_health_run=parent)
    assert_clean(at)
    assert at.selectbox(key="data_health_run").value == parent
    at.selectbox(key="data_health_act_0").select("exclude")
    at.selectbox(key="data_health_act_1").select("relabel as suggested")
    at.text_input(key="data_health_label_name").input("digits-relabelled")
    next(b for b in at.button if b.label.startswith("Make a new version")).click().run()
    assert_clean(at)

    new = load_dataset(ws, "digits-relabelled")
    old = load_dataset(ws, NAME)
    assert at.session_state["data_dataset"] == "digits-relabelled"
    assert sum(new.size(s) for s in ("train", "val", "test")) == \
        sum(old.size(s) for s in ("train", "val", "test")) - 1

    def where(item: dict) -> dict[str, str]:
        """The new version's files that came from ``item``'s file -> their class."""
        stem = item["id"].rsplit("/", 1)[1]
        return {sid: new.info.classes[int(new.labels(s)[i])] for s in ("train", "val", "test")
                for i, sid in enumerate(new.ids(s)) if sid.endswith(stem)}

    assert where(items[0]) == {}  # excluded
    assert list(where(items[1]).values()) == [items[1]["suggested"]]  # relabelled
    record = json.loads((health_dir(ws, "digits-relabelled") / "version.json").read_text())
    assert (record["parent"], record["removed"], record["relabelled"]) == (NAME, 1, 1)
