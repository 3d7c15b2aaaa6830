"""Pruned and distilled runs: check the request, build the child's config, queue its job.

Torch-free: the CLI and the Compress page call these and return at once. A pruned run is a new
run (kind ``pruned``, parent = the source) whose config is the source's with a ``prune``
section; a distilled run (kind ``distilled``, parent = the teacher) is a student model of the
registry with a ``distill`` section. Both then train through the workspace's queue like any run.
"""

from __future__ import annotations

import dataclasses

from core.checkpoint import run_checkpoint
from core.config import DistillConfig, ModelConfig, PruneConfig, RunConfig
from core.errors import InvalidConfig, InvalidRunState
from core.runs.lifecycle import launch
from core.runs.records import ACTIVE, Run
from core.runs.store import Store
from core.workspace import Workspace


def launch_prune(store: Store, source_id: str, settings: PruneConfig,
                 finetune_epochs: int = 3, lr: float | None = None, name: str = "") -> Run:
    """Queue a pruned copy of ``source_id`` fine-tuned for ``finetune_epochs`` per round."""
    config = pruned_config(store, source_id, settings, finetune_epochs, lr)
    source = store.get_run(source_id)
    label = name or f"{source.name or source.id} {settings.method} {settings.amount:.0%}"
    return launch(store, config, label, kind="pruned", parent_run=source_id)


def pruned_config(store: Store, source_id: str, settings: PruneConfig,
                  finetune_epochs: int = 3, lr: float | None = None) -> RunConfig:
    """The source's config, fine-tuning its own weights, with the ``prune`` section."""
    source = _usable(store, source_id, "pruned")
    if source.kind == "ensemble":
        raise InvalidRunState(f"Run {source_id} is an ensemble: prune one of its members.")
    if finetune_epochs < 1:
        raise InvalidConfig(f"finetune epochs must be >= 1, got {finetune_epochs}")
    settings.validate(finetune_epochs * settings.steps)
    if settings.method == "unstructured" and settings.importance not in ("l1", "l2"):
        raise InvalidConfig("Unstructured pruning ranks single weights by magnitude; "
                            "--importance bn|taylor applies to --structured only.")
    raw = source.config
    config = RunConfig.from_dict({k: raw[k] for k in ("data", "model", "train")})
    # The weights come from the source's checkpoint: no pretrained file, nothing frozen.
    config.model = ModelConfig(name=config.model.name)
    config.train.epochs = finetune_epochs * settings.steps
    config.train.nproc = 1
    config.train.patience = None  # every round gets its fine-tune epochs
    if lr is not None:
        config.train.lr = lr
    config.prune = dataclasses.replace(settings, source=source_id)
    config.validate()
    return config


def launch_distill(store: Store, teacher_id: str, student: RunConfig,
                   temperature: float = 4.0, alpha: float = 0.7, name: str = "") -> Run:
    """Queue ``student`` (a registry model on the teacher's dataset) learning from the teacher."""
    config = distilled_config(store, teacher_id, student, temperature, alpha)
    teacher = store.get_run(teacher_id)
    label = name or f"{config.model.name} from {teacher.name or teacher.id}"
    return launch(store, config, label, kind="distilled", parent_run=teacher_id)


def distilled_config(store: Store, teacher_id: str, student: RunConfig,
                     temperature: float = 4.0, alpha: float = 0.7) -> RunConfig:
    """``student`` with the ``distill`` section, checked against its teacher."""
    teacher = _usable(store, teacher_id, "distilled")
    if student.data.dataset != teacher.dataset:
        raise InvalidConfig(f"The student must learn on the teacher's dataset "
                            f"({teacher.dataset}), not {student.data.dataset}; drop --dataset.")
    config = RunConfig.from_dict(student.to_dict())  # the caller's config stays as it was
    config.distill = DistillConfig(teacher=teacher_id, temperature=temperature, alpha=alpha)
    config.prune = None
    config.validate()
    return config


def teacher_data(store: Store, teacher_id: str) -> dict:
    """The teacher's data section (its dataset and fold), for the student's config."""
    return dict(store.get_run(teacher_id).config["data"])


def _usable(store: Store, run_id: str, what: str) -> Run:
    """A run with weights that will not change under the child: ended, with a checkpoint."""
    run = store.get_run(run_id)
    if run.kind == "cv":
        raise InvalidRunState(f"Run {run_id} is a cross-validation parent with no model of its "
                              "own; use one of its folds.")
    if run.status in ACTIVE:
        raise InvalidRunState(f"Run {run_id} is {run.status}: wait until it ends before making "
                              f"a {what} run from it.")
    if run_checkpoint(Workspace.of(store), run_id) is None:
        raise InvalidRunState(f"Run {run_id} has no checkpoint: train it for at least one epoch "
                              f"before making a {what} run from it.")
    return run
