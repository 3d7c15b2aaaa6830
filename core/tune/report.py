"""What a study looks like to a reader: its trials (Optuna's verdicts joined with their runs), its
best trial, and the payload ``study`` / ``tune --json`` print and the Tune page draws."""

from __future__ import annotations

from typing import Any

from core.errors import InvalidRunState
from core.runs.records import Run
from core.runs.store import Store
from core.tune.study import driver_jobs, open_study, study_spec, sync_study, trial_runs

# Optuna's state of a trial, as the trials table says it. A RUNNING trial says its run's status
# instead (queued, running, or cancelled/interrupted while its study is stopped).
STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "WAITING": "queued"}


def trial_rows(study: Any, runs: dict[str, Run]) -> list[dict[str, Any]]:
    """One dict per Optuna trial, in trial order: number, state, value(s), params, run, time."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        run = runs.get(t.user_attrs.get("run_id", ""))
        state = STATES.get(t.state.name) or (run.status if run is not None else "running")
        rows.append({
            "number": t.number, "state": state,
            "value": t.values[0] if t.values else None,
            "values": list(t.values) if t.values else None,
            "params": dict(t.params), "run_id": run.id if run is not None else None,
            "epochs": run.epoch if run is not None else len(t.intermediate_values),
            "duration_s": run.duration if run is not None else None,
            "error": run.error if run is not None and state == "failed" else None,
        })
    return rows


def best_trial(study: Any, number: int | None = None) -> Any:
    """Trial ``number`` if given (it must be complete), else the best: for several objectives,
    the Pareto-optimal trial with the best first objective."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if number is not None:
        found = [t for t in complete if t.number == number]
        if not found:
            raise InvalidRunState(f"Trial {number} did not complete; promote one of "
                                  f"{sorted(t.number for t in complete) or 'none yet'}.")
        return found[0]
    if not complete:
        raise InvalidRunState("No trial has completed yet: nothing to promote.")
    if len(study.directions) == 1:
        return study.best_trial
    first_max = study.directions[0].name == "MAXIMIZE"
    front = study.best_trials
    return max(front, key=lambda t: t.values[0] if first_max else -t.values[0])


def best_trial_runs(summary: dict[str, Any], n: int) -> list[str]:
    """The runs of the ``n`` best completed trials of a :func:`study_summary`, best first (by
    the first objective)."""
    done = [t for t in summary["trials"]
            if t["state"] == "complete" and t["run_id"] and t["value"] is not None]
    done.sort(key=lambda t: t["value"], reverse=summary["directions"][0] == "maximize")
    return [t["run_id"] for t in done[:n]]


def study_summary(store: Store, study_id: str, study: Any = None) -> dict[str, Any]:
    """The study as ``study STUDY --json`` prints it (``study``: its Optuna study, when the caller
    has it open)."""
    run = sync_study(store, study_id)
    spec = study_spec(run)
    runs = {r.id: r for r in trial_runs(store, study_id)}
    if study is None:
        study = open_study(store, study_id, sampler=False)
    rows = trial_rows(study, runs)
    try:
        best = best_trial(study)
        best_payload = {"number": best.number, "value": best.values[0],
                        "values": list(best.values), "params": dict(best.params),
                        "run_id": best.user_attrs.get("run_id")}
    except InvalidRunState:
        best_payload = None
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return {
        "study_id": run.id, "name": run.name, **_now(run), "dataset": run.dataset,
        "model": run.model, "metrics": spec.metrics, "directions": spec.directions,
        "sampler": spec.sampler, "pruner": spec.pruner, "n_trials": spec.n_trials,
        "parallel": spec.parallel, "timeout": spec.timeout, "seed": spec.seed,
        "epochs": run.config["train"]["epochs"], "space": [p.spec for p in spec.space],
        "counts": counts, "best": best_payload, "trials": rows,
    }


def _now(run: Run) -> dict[str, Any]:
    """What a study summary takes from the study's row as it is now: its state and duration."""
    return {"state": run.status, "status": run.status, "error": run.error,
            "duration_s": run.duration}


def render(summary: dict[str, Any]) -> str:
    """The study for a person: a header, the best trial, one line per trial."""
    metric = " / ".join(f"{m} ({d[:3]})" for m, d in zip(summary["metrics"],
                                                         summary["directions"], strict=True))
    lines = [f"{summary['study_id']}: {summary['state']} ({summary['sampler']} sampler, "
             f"{summary['pruner']} pruner, {summary['dataset']}/{summary['model']}, {metric})",
             "trials: " + ", ".join(f"{n} {s}" for s, n in sorted(summary["counts"].items()))
             + f" of {summary['n_trials']}"]
    if summary["error"]:
        lines.append(f"error: {summary['error']}")
    best = summary["best"]
    if best:
        lines.append(f"best: trial {best['number']} value {_fmt(best['values'])} "
                     f"run {best['run_id']}  {_params(best['params'])}")
    for row in summary["trials"]:
        lines.append(f"  #{row['number']:<3} {row['state']:11} {_fmt(row['values']):>16}  "
                     f"{row['run_id'] or '-':22} {_params(row['params'])}")
    return "\n".join(lines)


def _fmt(values: list[float] | None) -> str:
    return "-" if not values else ", ".join(f"{v:.4g}" for v in values)


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in params.items())


def reported_summary(store: Store, study_id: str) -> dict[str, Any] | None:
    """The study as its last driver reported it when it ran to its budget (its job's result),
    with the study's status as of now; None when that driver did not complete. What the blocking
    ``tune`` prints as it ends without loading Optuna itself (~0.1 s of import and exit): nothing
    writes to the study's trials between its driver's end and the next resume."""
    drivers = driver_jobs(store, study_id)
    last = max(drivers, key=lambda job: job.created_at, default=None)
    if last is None or last.status != "completed" or not isinstance(last.result, dict) \
            or "summary" not in last.result:
        return None
    return {**last.result["summary"], **_now(sync_study(store, study_id))}
