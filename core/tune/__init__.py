"""Studies on Optuna: search spaces, a study as runs (a ``study`` parent, ``trial`` children, a
light ``tune`` driver job), pruning from inside the trial, promote, and Optuna's pictures.

Importing this package never imports Optuna or torch: they load inside the functions that use
them (the driver, a trial's reporter, a reader of a study's trials, a picture).
"""

from core.tune.report import best_trial, best_trial_runs, render, study_summary, trial_rows
from core.tune.space import KINDS, Param, default_space, parse_param
from core.tune.spec import PRUNERS, SAMPLERS, StudySpec, default_direction, default_trials
from core.tune.study import (
    DRIVER_KIND,
    STUDY_KIND,
    TRIAL_KIND,
    cancel_study,
    delete_trials,
    get_study,
    launch_study,
    list_studies,
    promote,
    resume_study,
    sync_study,
    trial_runs,
)

__all__ = [
    "DRIVER_KIND", "KINDS", "PRUNERS", "SAMPLERS", "STUDY_KIND", "TRIAL_KIND", "Param",
    "StudySpec", "best_trial", "best_trial_runs", "cancel_study", "default_direction",
    "default_space", "default_trials", "delete_trials", "get_study", "launch_study",
    "list_studies", "parse_param", "promote", "render", "resume_study", "study_summary",
    "sync_study", "trial_rows", "trial_runs",
]
