"""What a study is: its objectives, budget, sampler, pruner and search space (``StudySpec``), and
the registries that turn a sampler or pruner name into Optuna's object.

Samplers and pruners are Optuna's own; this module only picks their settings for the small
budgets a laptop affords (fewer random start-up trials than Optuna's defaults, which assume
hundreds). Importing it never imports Optuna.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from core.errors import InvalidConfig
from core.tune.space import Param, grid, grid_size

# Objectives: a metric the trainer logs each epoch (the first objective, reported for pruning),
# or a property of the trained model measured once at the end (for a multi-objective study).
EPOCH_METRICS = ("val/acc", "val/loss", "train/acc", "train/loss")
MODEL_METRICS = {"size": "parameters, millions", "latency": "ms per sample, batch of 1"}
DIRECTIONS = ("maximize", "minimize")
DEFAULT_TRIALS = 20
MAX_PARALLEL = 64

_SAMPLERS: dict[str, Callable[[StudySpec], Any]] = {}
_PRUNERS: dict[str, Callable[[StudySpec, int], Any]] = {}
SAMPLER_HELP = {"tpe": "Bayesian (tree-structured Parzen estimator)", "random": "random search",
                "grid": "every point of a grid of choice/int rows", "cmaes": "CMA-ES (evolution "
                "strategy; categorical rows are drawn at random)",
                "nsga2": "NSGA-II genetic search, for several objectives"}
PRUNER_HELP = {"median": "stop a trial whose epoch value is worse than the median of earlier "
                         "trials at that epoch", "hyperband": "successive halving over epochs",
               "none": "every trial runs all its epochs"}


def sampler(name: str) -> Callable:
    def register(builder: Callable) -> Callable:
        _SAMPLERS[name] = builder
        return builder
    return register


def pruner(name: str) -> Callable:
    def register(builder: Callable) -> Callable:
        _PRUNERS[name] = builder
        return builder
    return register


def _startup(n_trials: int) -> int:
    """Random trials before a model-based sampler or pruner starts deciding: a third of a small
    budget (Optuna's defaults, 10 and 5, would make an 8-trial study purely random)."""
    return max(2, min(10, n_trials // 3))


@sampler("tpe")
def _tpe(spec: StudySpec) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=_startup(spec.n_trials))


@sampler("random")
def _random(spec: StudySpec) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=spec.seed)


@sampler("grid")
def _grid(spec: StudySpec) -> Any:
    import optuna

    return optuna.samplers.GridSampler(grid(spec.space), seed=spec.seed)


@sampler("cmaes")
def _cmaes(spec: StudySpec) -> Any:
    import optuna

    return optuna.samplers.CmaEsSampler(seed=spec.seed, n_startup_trials=_startup(spec.n_trials),
                                        warn_independent_sampling=False)


@sampler("nsga2")
def _nsga2(spec: StudySpec) -> Any:
    import optuna

    population = max(4, min(50, spec.n_trials // 3))
    return optuna.samplers.NSGAIISampler(seed=spec.seed, population_size=population)


@pruner("median")
def _median(spec: StudySpec, epochs: int) -> Any:
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=_startup(spec.n_trials),
                                       n_warmup_steps=0)


@pruner("hyperband")
def _hyperband(spec: StudySpec, epochs: int) -> Any:
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 2),
                                          reduction_factor=3)


@pruner("none")
def _none(spec: StudySpec, epochs: int) -> Any:
    import optuna

    return optuna.pruners.NopPruner()


SAMPLERS = tuple(_SAMPLERS)
PRUNERS = tuple(_PRUNERS)


@dataclass
class StudySpec:
    """A study's settings, kept in its run's summary (``summary["study"]``)."""

    metrics: list[str] = field(default_factory=lambda: ["val/acc"])
    directions: list[str] = field(default_factory=lambda: ["maximize"])
    sampler: str = "tpe"
    pruner: str = "median"
    n_trials: int = DEFAULT_TRIALS
    timeout: float | None = None  # seconds after which no new trial starts
    parallel: int = 1  # trials in flight at once (the queue may run fewer)
    seed: int = 0
    storage: str | None = None  # an Optuna RDB URL; None: a journal file in the study's folder
    params: list[dict[str, Any]] = field(default_factory=list)

    @property
    def space(self) -> list[Param]:
        return [Param.from_dict(p) for p in self.params]

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StudySpec:
        return cls(**raw)

    def validate(self) -> StudySpec:
        """Check everything a user typed; returns self. One InvalidConfig line per mistake."""
        _check_objectives(self.metrics, self.directions)
        if self.sampler not in _SAMPLERS:
            raise InvalidConfig(f"sampler must be one of {', '.join(SAMPLERS)}; got "
                                f"{self.sampler!r}")
        if self.pruner not in _PRUNERS:
            raise InvalidConfig(f"pruner must be one of {', '.join(PRUNERS)}; got "
                                f"{self.pruner!r}")
        if self.multi_objective and self.pruner != "none":
            raise InvalidConfig("Optuna prunes single-objective studies only: use --pruner none "
                                "with several metrics.")
        if self.n_trials < 1:
            raise InvalidConfig(f"trials must be >= 1, got {self.n_trials}")
        if not 1 <= self.parallel <= MAX_PARALLEL:
            raise InvalidConfig(f"parallel must be from 1 to {MAX_PARALLEL}, got {self.parallel}")
        if self.timeout is not None and self.timeout <= 0:
            raise InvalidConfig(f"timeout must be > 0 seconds, got {self.timeout}")
        if not self.params:
            raise InvalidConfig("The search space is empty: give at least one --param row.")
        names = [p["name"] for p in self.params]
        if len(set(names)) != len(names):
            raise InvalidConfig("A hyperparameter appears twice in the search space: "
                                + ", ".join(sorted({n for n in names if names.count(n) > 1})))
        if self.sampler == "grid":
            size = grid_size(grid(self.space))
            if self.n_trials > size:
                raise InvalidConfig(f"The grid has {size} points; ask for at most {size} trials "
                                    "(or omit --trials).")
        return self

    def build_sampler(self, asked: int = 0) -> Any:
        """The sampler, for a driver that finds ``asked`` trials already in the study. Its seed
        moves on by that many: a resumed driver given the study's own seed again would repeat
        the first driver's suggestions (the same params tried twice). A study never resumed
        gets the same sequence for the same seed."""
        from dataclasses import replace

        return _SAMPLERS[self.sampler](replace(self, seed=self.seed + asked) if asked else self)

    def build_pruner(self, epochs: int) -> Any:
        return _PRUNERS[self.pruner](self, epochs)


def _check_objectives(metrics: list[str], directions: list[str]) -> None:
    if not metrics or metrics[0] not in EPOCH_METRICS:
        raise InvalidConfig(f"The first metric must be one the trainer logs each epoch: "
                            f"{', '.join(EPOCH_METRICS)}; got {metrics[:1]}.")
    for extra in metrics[1:]:
        if extra not in MODEL_METRICS:
            raise InvalidConfig(f"A second objective must be one of {', '.join(MODEL_METRICS)}; "
                                f"got {extra!r}.")
    if len(set(metrics)) != len(metrics):
        raise InvalidConfig("A metric is listed twice.")
    if len(directions) != len(metrics) or any(d not in DIRECTIONS for d in directions):
        raise InvalidConfig(f"Give one direction (maximize or minimize) per metric: "
                            f"{len(metrics)} metric(s), directions {directions}.")


def default_direction(metric: str) -> str:
    """Accuracies up; losses, size and latency down."""
    return "maximize" if metric.endswith("acc") else "minimize"


def default_trials(sampler_name: str, space: list[Param]) -> int:
    """A grid study tries its whole grid; any other, ``DEFAULT_TRIALS``."""
    return grid_size(grid(space)) if sampler_name == "grid" else DEFAULT_TRIALS
