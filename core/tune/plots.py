"""The study's pictures: Optuna's own plotly visualisations, by name.

``study_figure(store, study_id, name)`` returns a plotly figure, or raises ``PlotUnavailable`` with
a one-line reason (too few trials yet, a picture a multi-objective study does not have). Optuna
and plotly are imported only here, when a picture is asked for.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from core.errors import UserError
from core.runs.store import Store
from core.tune.study import open_study, study_spec

# Pictures already drawn, by (study, name, the trials they were drawn from): the Tune page redraws
# every 2 s while a study runs, and a contour or fANOVA importances of a few dozen trials takes a
# second of the CPU the trials train on; only a trial's progress or end changes a picture.
_FIGURES: OrderedDict[tuple, Any] = OrderedDict()
_KEEP = 16
_LOCK = threading.Lock()


class PlotUnavailable(UserError):
    """This picture cannot be drawn for this study (yet)."""


# name -> (title, needs several objectives (True) / one (False) / either (None))
PLOTS: dict[str, tuple[str, bool | None]] = {
    "history": ("Optimisation history", None),
    "intermediate": ("Intermediate values (pruning)", False),
    "importances": ("Parameter importances", None),
    "parallel": ("Parallel coordinates", None),
    "slice": ("Slice", None),
    "contour": ("Contour", None),
    "pareto": ("Pareto front", True),
}


def plot_names(multi_objective: bool) -> list[str]:
    """The pictures a study has, in the order a page offers them."""
    return [n for n, (_, multi) in PLOTS.items() if multi is None or multi == multi_objective]


def study_figure(store: Store, study_id: str, name: str) -> Any:
    """Optuna's figure ``name`` for the study, titled for the page."""
    from optuna.trial import TrialState

    spec = study_spec(store.get_run(study_id))
    if name not in plot_names(spec.multi_objective):
        raise PlotUnavailable(f"No {name!r} picture for this study; choose from "
                              f"{', '.join(plot_names(spec.multi_objective))}.")
    study = open_study(store, study_id, sampler=False)
    key = (study_id, name, _state_of(study))
    with _LOCK:
        if key in _FIGURES:
            _FIGURES.move_to_end(key)
            return _FIGURES[key]
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    need = 2 if name in ("importances", "contour", "parallel") else 1
    if name != "intermediate" and len(complete) < need:
        raise PlotUnavailable(f"{PLOTS[name][0]}: needs {need} completed trial(s); "
                              f"{len(complete)} so far.")
    if name == "intermediate" and not any(t.intermediate_values for t in study.trials):
        raise PlotUnavailable("Intermediate values: no trial has finished an epoch yet.")
    try:
        figure = _BUILDERS[name](study, spec)
    except (ValueError, RuntimeError) as exc:  # Optuna's "not enough data" for this picture
        raise PlotUnavailable(f"{PLOTS[name][0]}: {str(exc).splitlines()[0][:200]}") from None
    figure.update_layout(title=PLOTS[name][0], margin={"t": 50, "b": 40})
    with _LOCK:
        _FIGURES[key] = figure
        while len(_FIGURES) > _KEEP:
            _FIGURES.popitem(last=False)
    return figure


def _state_of(study: Any) -> tuple:
    """All a picture is drawn from: each trial's state, params, values and reported epochs."""
    return tuple((t.number, t.state.name, tuple(sorted(t.params.items())), tuple(t.values or ()),
                  tuple(sorted(t.intermediate_values.items())))
                 for t in study.get_trials(deepcopy=False))


def _target(spec: Any) -> dict[str, Any]:
    """A multi-objective study's single-objective pictures show its first objective."""
    if not spec.multi_objective:
        return {"target_name": spec.metrics[0]}
    return {"target": lambda t: t.values[0], "target_name": spec.metrics[0]}


def _history(study: Any, spec: Any) -> Any:
    from optuna.visualization import plot_optimization_history

    return plot_optimization_history(study, **_target(spec))


def _intermediate(study: Any, spec: Any) -> Any:
    from optuna.visualization import plot_intermediate_values

    return plot_intermediate_values(study)


def _importances(study: Any, spec: Any) -> Any:
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization import plot_param_importances

    # Seeded: the same trials give the same bars on every redraw.
    return plot_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=spec.seed),
                                  **_target(spec))


def _parallel(study: Any, spec: Any) -> Any:
    from optuna.visualization import plot_parallel_coordinate

    return plot_parallel_coordinate(study, **_target(spec))


def _slice(study: Any, spec: Any) -> Any:
    from optuna.visualization import plot_slice

    return plot_slice(study, **_target(spec))


def _contour(study: Any, spec: Any) -> Any:
    from optuna.visualization import plot_contour

    return plot_contour(study, **_target(spec))


def _pareto(study: Any, spec: Any) -> Any:
    from optuna.visualization import plot_pareto_front

    return plot_pareto_front(study, target_names=spec.metrics)


_BUILDERS: dict[str, Callable[[Any, Any], Any]] = {
    "history": _history, "intermediate": _intermediate, "importances": _importances,
    "parallel": _parallel, "slice": _slice, "contour": _contour, "pareto": _pareto,
}
