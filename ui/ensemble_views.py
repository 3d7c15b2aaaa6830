"""The Ensemble page's pieces: which runs may be members, the build job, the diversity view.

Building an ensemble predicts every member on val and test (torch), so it is a background job
(``core.runs.launchers.start_ensemble``); the diversity view only reads stored predictions
(``core.analyze.ensemble.diversity`` once every ``eval/test.npz`` is fresh).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st

from core.analyze.evaluate import eval_path
from core.errors import RunNotFound
from core.runs.records import Job
from core.runs.store import Run, Store
from core.workspace import Workspace
from ui.format import plain
from ui.runs import RECENT, has_checkpoint, run_label
from ui.state import active_run, set_active_run

METHOD_HELP = {  # one line each, under the method picker (the same order as ENSEMBLE_METHODS)
    "soft": "Mean of the members' probabilities.",
    "hard": "Majority vote of the members' predicted classes.",
    "weighted": "Weighted mean; the weights are fitted on the validation split.",
    "stacking": "A logistic regression on the members' validation probabilities.",
}
METHOD_NAMES = {"soft": "soft voting", "hard": "hard voting", "weighted": "weighted voting",
                "stacking": "stacking"}
DEFAULT_MEMBERS = 3  # how many recent runs of the active run's dataset are preselected
BUILD_JOB = "_ensemble_job"  # session state: the build this session started
ADOPTED = "_ensemble_adopted"  # session state: the build whose ensemble became the active run
NOT_MEMBERS = ("ensemble", "cv", "cv_fold")  # an ensemble of ensembles, or of CV folds: no


# -- members ---------------------------------------------------------------------------------------


def member_options(s: Store) -> list[Run]:
    """Runs that may be members, newest first: completed, with a checkpoint, not an ensemble, a
    cross-validation fold (each is validated on its own fold) or a run trained on val (the
    combiner is fitted on val)."""
    return [r for r in s.list_runs(limit=RECENT, status="completed")
            if r.kind not in NOT_MEMBERS and not r.config["data"].get("train_on_val")
            and has_checkpoint(r)]


def default_members(runs: Sequence[Run], s: Store) -> list[str]:
    """The most recent runs of the active run's dataset (else the newest run's), the active
    run first when it is one of them."""
    if not runs:
        return []
    active = active_run(s)
    dataset = active.dataset if active is not None else runs[0].dataset
    same = [r.id for r in runs if r.dataset == dataset]
    if active is not None and active.id in same:
        same.remove(active.id)
        same.insert(0, active.id)
    return same[:DEFAULT_MEMBERS]


def build_problem(chosen: Sequence[Run]) -> str | None:
    """Why these members cannot form an ensemble (plain text), or None."""
    if len(chosen) < 2:
        return "Pick at least two member runs."
    datasets = sorted({r.dataset for r in chosen})
    if len(datasets) > 1:
        return ("Members must share one dataset; the picked runs use "
                f"{', '.join(datasets)}: keep the runs of one.")
    return None


# -- the build job ---------------------------------------------------------------------------------


def current_build(s: Store) -> Job | None:
    """The build this session started, else one running for the workspace (another tab or
    the CLI's ``--detach``)."""
    job_id = st.session_state.get(BUILD_JOB)
    if job_id:
        try:
            return s.get_job(job_id)
        except RunNotFound:  # deleted meanwhile
            st.session_state.pop(BUILD_JOB, None)
    return next((j for j in s.active_jobs() if j.kind == "ensemble"), None)


def adopt_build(job: Job) -> str | None:
    """The ensemble a completed build made, once: it becomes the active run; None otherwise."""
    if job.status != "completed" or st.session_state.get(ADOPTED) == job.id:
        return None
    st.session_state[ADOPTED] = job.id
    run_id = (job.result or {}).get("run_id")
    if run_id:
        set_active_run(run_id)
    return run_id


def ensemble_runs(s: Store) -> list[Run]:
    """Completed ensembles, newest first; also the active run if it is one (however old)."""
    runs = [r for r in s.list_runs(limit=RECENT, status="completed") if r.kind == "ensemble"]
    active = active_run(s)
    if active is not None and active.kind == "ensemble" and active.status == "completed" \
            and active.id not in {r.id for r in runs}:
        runs.insert(0, active)
    return runs


# -- the diversity view ----------------------------------------------------------------------------


def load_diversity(ws: Workspace, run: Run, members: Sequence[str]) -> dict[str, Any]:
    """``core.analyze.ensemble.diversity`` on test, cached until a prediction file changes.

    Call it only when every member's and the ensemble's test predictions are fresh: then it
    reads files and never runs a model.
    """
    stamp = tuple(eval_path(ws, r, "test").stat().st_mtime_ns for r in (run.id, *members))
    return _diversity(str(ws.home), run.id, stamp)


@st.cache_data(max_entries=16, show_spinner=False)
def _diversity(home_path: str, run_id: str, stamp: tuple[int, ...]) -> dict[str, Any]:
    from core.analyze.ensemble import diversity

    with Workspace.open(home_path) as ws:
        return diversity(ws, run_id, "test")


def member_labels(s: Store, members: Sequence[str]) -> list[str]:
    """Short, distinct names of the members for chart axes (a deleted member keeps its id)."""
    labels = []
    for member in members:
        try:
            run = s.get_run(member)
            label = run.name or run.id
        except RunNotFound:
            label = member
        labels.append(label if label not in labels else f"{label} · {member}")
    return labels


def mean_disagreement(matrix: Sequence[Sequence[float]]) -> float:
    """The mean over pairs of distinct members of their disagreement."""
    m = len(matrix)
    pairs = [matrix[i][j] for i in range(m) for j in range(m) if i != j]
    return sum(pairs) / len(pairs) if pairs else 0.0


def diversity_caption(d: dict[str, Any], labels: Sequence[str]) -> str:
    """One plain sentence on why the ensemble helps or does not."""
    spread = mean_disagreement(d["disagreement"])
    best = max(d["member_accuracy"].values())
    gain = 100 * (d["ensemble_accuracy"] - best)
    where = "above" if gain > 0 else "below" if gain < 0 else "level with"
    said = (f"Two members disagree on {spread:.1%} of test samples on average; the ensemble "
            f"({d['ensemble_accuracy']:.1%}) is {f'{abs(gain):.1f} points ' if gain else ''}"
            f"{where} the best member ({best:.1%}).")
    top = max(range(len(labels)), key=lambda k: d["weights"][k])
    if spread < 0.02:
        why = "The members make nearly the same predictions, so combining them adds little."
    elif gain > 0:
        why = "They err on different samples, and the combination corrects some of those errors."
    elif d["method"] == "weighted" and d["weights"][top] > 0.9:
        why = (f"The weights fitted on val trust {labels[top]} almost alone: the others add "
               "nothing the validation split could see.")
    elif d["method"] in ("soft", "hard"):
        why = ("They disagree, but the weaker members outvote the best one: try weighted or "
               "stacking, or leave the weakest member out.")
    else:
        why = "They disagree, but not usefully: leave the weakest member out, or add others."
    return f"{said} {why}"


def disagreement_figure(d: dict[str, Any], labels: Sequence[str]):
    """Heatmap of pairwise disagreement (% of test samples two members predict differently)."""
    import plotly.graph_objects as go

    names = [html.escape(label) for label in labels]  # plotly reads tags in axis labels
    z = [[100 * v for v in row] for row in d["disagreement"]]
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, colorscale="Blues", zmin=0,
                               texttemplate="%{z:.1f}%", colorbar={"title": "%"},
                               hovertemplate="%{y} vs %{x}: %{z:.1f}%<extra></extra>"))
    fig.update_layout(title="Pairwise disagreement on test", height=360,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    fig.update_yaxes(autorange="reversed")
    return fig


def accuracy_figure(d: dict[str, Any], labels: Sequence[str]):
    """Each member's test accuracy next to the ensemble's (weights on the bars if fitted)."""
    import plotly.graph_objects as go

    accs = [100 * d["member_accuracy"][m] for m in d["members"]] + [100 * d["ensemble_accuracy"]]
    text = [f"{a:.1f}%" for a in accs]
    if d["method"] == "weighted":
        text = [f"{t}<br>w {w:.2f}" for t, w in zip(text, d["weights"], strict=False)] + text[-1:]
    names = [html.escape(label) for label in labels] + [f"Ensemble ({d['method']})"]
    colors = ["#90a4ae"] * len(labels) + ["#43a047"]
    fig = go.Figure(go.Bar(x=names, y=accs, text=text, textposition="outside",
                           marker_color=colors, hovertemplate="%{x}: %{y:.2f}%<extra></extra>"))
    low = max(0.0, min(accs) - 10)  # from zero, a gain of one point would be invisible
    fig.update_layout(title="Test accuracy", height=360, yaxis_title="accuracy (%)",
                      yaxis_range=[low, 104], margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def diversity_frame(d: dict[str, Any], labels: Sequence[str]) -> pd.DataFrame:
    rows = [{"Member": label, "Run": m, "Test accuracy": d["member_accuracy"][m],
             "Weight": w if d["method"] == "weighted" else None}
            for label, m, w in zip(labels, d["members"], d["weights"], strict=True)]
    rows.append({"Member": f"Ensemble ({d['method']})", "Run": "",
                 "Test accuracy": d["ensemble_accuracy"], "Weight": sum(d["weights"])})
    frame = pd.DataFrame(rows, columns=["Member", "Run", "Test accuracy", "Weight"])
    return frame if d["method"] == "weighted" else frame.drop(columns="Weight")


def render_diversity(run: Run, d: dict[str, Any], labels: Sequence[str]) -> None:
    """The diversity view: disagreement heatmap, accuracy bars, the sentence, the table."""
    st.markdown(f"**{plain(run_label(run))}** · {METHOD_NAMES[d['method']]} over "
                f"{len(labels)} runs")
    left, right = st.columns(2)
    left.plotly_chart(disagreement_figure(d, labels), key="ensemble_disagreement",
                      width="stretch")
    right.plotly_chart(accuracy_figure(d, labels), key="ensemble_accuracy", width="stretch")
    st.caption(plain(diversity_caption(d, labels)))
    st.dataframe(diversity_frame(d, labels), hide_index=True, width="stretch",
                 column_config={"Test accuracy": st.column_config.NumberColumn(format="%.4f"),
                                "Weight": st.column_config.NumberColumn(format="%.3f")})

