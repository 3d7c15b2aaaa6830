"""The Data page's Health tab: the stored report, the check as a background job, the fixes.

The check runs as a job (``core.runs.launchers.start_health``) that this tab watches; the
report is read back from beside the dataset. A fix makes a new dataset version in the page, with
a progress bar, like an import.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.data.health import (
    make_version,
    removal_samples,
    stored_label_report,
    stored_report,
    suggest_version_name,
)
from core.errors import UserError
from core.runs.jobs import DATASET_SUBJECT
from core.runs.launchers import start_health
from ui import state
from ui.data_views import THUMB, render_new_dataset, thumbnail
from ui.format import plain
from ui.jobs import render_job, watch_job
from ui.runs import has_checkpoint, run_label

ICONS = {"error": ":material/error:", "warning": ":material/warning:", "info": ":material/info:"}
SHOWN = 12  # samples (or groups) drawn per finding
ACTIONS = ("keep", "exclude", "relabel as suggested")


def render_health(info: Any, dataset: Any) -> None:
    """The whole tab: the dataset check, then the label errors of a chosen run."""
    s = state.store()
    job = s.latest_job(f"{DATASET_SUBJECT}{info.name}", "health", "")
    report = stored_report(state.workspace(), info.name)
    if job is not None and job.is_active:
        watch_job(job.id, "Health check")
    elif report is None:
        render_job(job, "The health check")
        st.info("Not checked yet, or the data changed since the last check.")
        if st.button("Check health", key="data_health_check", icon=":material/health_and_safety:"):
            _start(s, info.name)
    else:
        render_report(report, info, dataset)
        if st.button("Check again", key="data_health_again", icon=":material/refresh:"):
            _start(s, info.name, refresh=True)
    st.divider()
    render_label_errors(info, dataset)


def _start(s: Any, name: str, run_id: str | None = None, refresh: bool = False) -> None:
    try:
        start_health(s, name, run_id, refresh=refresh)
    except UserError as exc:
        st.error(str(exc))
        return
    st.rerun()


def render_report(report: dict[str, Any], info: Any, dataset: Any) -> None:
    counts = report["counts"]
    st.caption(f"Checked {report['samples']:,} samples in {report['seconds']:.1f} s: "
               f"{counts['error']} errors, {counts['warning']} warnings, {counts['info']} notes.")
    if not report["findings"]:
        st.success("No problem found.")
    for k, finding in enumerate(report["findings"]):
        with st.expander(f"{plain(finding['title'])}", icon=ICONS[finding["severity"]],
                         expanded=finding["severity"] == "error"):
            st.markdown(plain(finding["message"]))
            render_items(finding, dataset, f"data_health_items_{k}")
            render_fix(finding, report, info, k)


def render_items(finding: dict[str, Any], dataset: Any, key: str) -> None:
    items = finding["items"]
    if not items:
        return
    if "samples" in items[0]:  # groups of copies
        for g, group in enumerate(items[:SHOWN]):
            render_samples(group["samples"], dataset, f"{key}_{g}")
    elif "split" in items[0]:
        render_samples(items[:SHOWN], dataset, key)
    else:
        st.dataframe(pd.DataFrame(items).astype(str), hide_index=True, key=key)
    if len(items) > SHOWN and ("samples" in items[0] or "split" in items[0]):
        st.caption(f"The first {SHOWN} of {len(items)}; `python -m core datasets health "
                   f"{plain(dataset.info.name)} --json` lists them all.")


def render_samples(samples: list[dict[str, Any]], dataset: Any, key: str) -> None:
    """Images side by side with where they are; rows (tables) as a small frame."""
    if dataset.info.modality != "image":
        st.dataframe(pd.DataFrame(samples).astype(str), hide_index=True, key=key)
        return
    images, captions = [], []
    for sample in samples:
        caption = f"{sample['split']}: {sample['id']} ({sample['label']})"
        try:
            images.append(thumbnail(dataset.raw(sample["split"], int(sample["index"]))))
            captions.append(caption)
        except (UserError, IndexError):
            st.caption(f"{plain(caption)}: {plain(sample.get('detail', 'cannot be decoded'))}")
    if images:
        st.image(images, caption=captions, width=THUMB)


def render_fix(finding: dict[str, Any], report: dict[str, Any], info: Any, k: int) -> None:
    fix = finding.get("fix") or {}
    if fix.get("train_flags"):
        st.caption("On the Train page (or the CLI): " + ", ".join(
            f"`{flag}`" for flag in fix["train_flags"]) + ".")
    args = fix.get("args") or []
    if len(args) != 2 or args[0] not in ("--remove", "--drop-columns"):
        return  # a fix for a CSV before import (imputation): the CLI's `datasets fix --from`
    c = st.columns([2, 1], vertical_alignment="bottom")
    new_name = c[0].text_input("New version", key=f"data_health_name_{k}",
                               placeholder=suggest_version_name(state.workspace(), info.name))
    if c[1].button(fix["label"], key=f"data_health_fix_{k}", icon=":material/auto_fix_high:"):
        if args[0] == "--remove":
            changes = {"remove": removal_samples(report, [args[1]]), "reasons": [args[1]]}
        else:
            changes = {"drop_columns": args[1].split(","), "reasons": ["drop columns"]}
        make_new_version(info.name, new_name.strip(), **changes)


def make_new_version(name: str, new_name: str, **changes: Any) -> None:
    """Make the version with a progress bar; on success select it, else say why."""
    ws = state.workspace()
    new_name = new_name or suggest_version_name(ws, name)
    render_new_dataset(
        lambda progress: make_version(ws, name, new_name, progress=progress, **changes),
        f"Making {plain(new_name)}...", "No new version",
        lambda made: f"Made {plain(made.name)} from {plain(name)}: "
                     f"{sum(made.split_counts.values())} samples. {plain(name)} is unchanged.",
        status=lambda message: plain(message or new_name))


# -- likely label errors -------------------------------------------------------------------------


def label_runs(s: Any, name: str) -> list[Any]:
    """Runs of dataset ``name`` that can judge its labels: trained runs with a checkpoint and
    completed cross-validation parents."""
    runs = [r for r in s.list_runs(limit=100) if r.dataset == name and r.kind != "ensemble"]
    return [r for r in runs if (r.kind == "cv" and r.status == "completed")
            or (r.kind != "cv" and has_checkpoint(r))]


def render_label_errors(info: Any, dataset: Any) -> None:
    st.subheader("Likely label errors")
    s = state.store()
    runs = label_runs(s, info.name)
    if not runs:
        st.info(f"Train a run on {plain(info.name)} (cross-validation works best) to find "
                "samples whose label the model doubts.")
        return
    by_id = {r.id: r for r in runs}
    run_id = st.selectbox("Judged by run", list(by_id), key="data_health_run",
                          format_func=lambda i: run_label(by_id[i], status=True),
                          help="A cross-validation run judges every train and val sample; "
                               "a single run, its validation split.")
    job = s.latest_job(f"{DATASET_SUBJECT}{info.name}", "health", run_id)
    labels = stored_label_report(state.workspace(), info.name, run_id)
    if job is not None and job.is_active:
        watch_job(job.id, "Finding label errors")
        return
    if labels is None:
        render_job(job, "Finding label errors")
        if st.button("Find label errors", key="data_health_labels", icon=":material/search:"):
            _start(s, info.name, run_id)
        return
    render_label_gallery(labels, info, dataset)


def render_label_gallery(labels: dict[str, Any], info: Any, dataset: Any) -> None:
    items = labels["items"]
    st.caption(f"{len(items)} likely label errors among {labels['checked']:,} samples, from "
               f"{plain(labels['source'])} (cleanlab's confident learning).")
    if not items:
        st.success("The model agrees with the given labels.")
        return
    with st.form("data_health_label_form"):
        actions = {}
        for row in range(0, min(len(items), 4 * SHOWN), 4):
            for col, (j, item) in zip(st.columns(4), enumerate(items[row:row + 4], start=row),
                                      strict=False):
                with col:
                    _render_label_item(item, dataset)
                    actions[j] = st.selectbox("Action", ACTIONS, key=f"data_health_act_{j}",
                                              label_visibility="collapsed")
        new_name = st.text_input("New version", key="data_health_label_name",
                                 placeholder=suggest_version_name(state.workspace(), info.name))
        go = st.form_submit_button("Make a new version with these changes",
                                   icon=":material/auto_fix_high:")
    if go:
        _apply_label_actions(items, actions, info.name, new_name.strip())


def _render_label_item(item: dict[str, Any], dataset: Any) -> None:
    caption = (f"{item['id']}: given {item['given']}, suggested {item['suggested']} "
               f"({item['confidence']:.0%})")
    if dataset.info.modality == "image":
        try:
            st.image(thumbnail(dataset.raw(item["split"], int(item["index"]))), caption=caption,
                     width=THUMB)
            return
        except UserError:
            pass
    st.caption(plain(caption))


def _apply_label_actions(items: list[dict[str, Any]], actions: dict[int, str], name: str,
                         new_name: str) -> None:
    remove = {(items[j]["split"], int(items[j]["index"])) for j, a in actions.items()
              if a == "exclude"}
    relabel = {(items[j]["split"], int(items[j]["index"])): items[j]["suggested"]
               for j, a in actions.items() if a == "relabel as suggested"}
    if not remove and not relabel:
        st.warning("Choose exclude or relabel for at least one sample.")
        return
    make_new_version(name, new_name, remove=remove, relabel=relabel,
                     reasons=["label errors"])
