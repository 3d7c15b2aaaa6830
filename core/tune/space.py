"""Search spaces: one row per hyperparameter, ``NAME=KIND:...``, checked against the config fields.

A row names a field of the run config (``lr``, ``batch_size``, ``augment``, ``train.lr``) and how
to draw it: ``loguniform:LOW:HIGH``, ``uniform:LOW:HIGH``, ``int:LOW:HIGH`` or ``choice:A,B,C``.
A list field (``augment``) takes choices joined with ``+`` (``choice:none,flip+crop``); a bool
field takes ``true,false``. Rows are drawn through an Optuna trial (:func:`suggest`) and applied to
the study's base config (:func:`apply_params`). Torch- and Optuna-free to import.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

from core.config import RunConfig
from core.errors import InvalidConfig

KINDS = ("loguniform", "uniform", "int", "choice")
# Fields that define the study (what is trained, on what, how it is judged and placed) rather
# than a point in its search space: the study fixes them for every trial.
STUDY_FIELDS = frozenset({"dataset", "cv", "fold", "name", "weights", "monitor", "mode",
                          "device", "nproc", "num_workers", "pin_memory", "seed"})
GRID_CAP = 1000  # points of a grid study: beyond that a grid is the wrong sampler
_TRUE, _FALSE = ("true", "on", "yes", "1"), ("false", "off", "no", "0")


@dataclass(frozen=True)
class Param:
    """One row of a search space: a config field and how a trial draws it."""

    name: str  # the config field, e.g. "lr"
    section: str  # "data", "model" or "train"
    kind: str  # one of KINDS
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()  # Optuna-ready primitives; a list field's choice is "a+b"

    @property
    def choices_text(self) -> str:
        """``A,B,C`` as ``choice:`` takes them (empty for a range)."""
        return ",".join(_choice_text(c) for c in self.choices)

    @property
    def spec(self) -> str:
        """The row as ``--param`` takes it."""
        if self.kind == "choice":
            return f"{self.name}=choice:{self.choices_text}"
        return f"{self.name}={self.kind}:{_num(self.low)}:{_num(self.high)}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "choices": list(self.choices)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Param:
        return cls(**{**raw, "choices": tuple(raw.get("choices", ()))})


def tunable_fields() -> dict[str, Any]:
    """Field name -> its ``ConfigFlag``: every config field a study may vary."""
    from core.cli.flags import config_flags  # the one description of the config's fields

    found = {}
    for cf in config_flags():
        if cf.name in STUDY_FIELDS:
            continue
        has_choices = bool(cf.field.metadata.get("choices"))
        if cf.kind in (int, float, bool) or (cf.kind in (str, list) and has_choices):
            found[cf.name] = cf
    return found


def parse_param(text: str, base: RunConfig | None = None) -> Param:
    """``NAME=KIND:ARGS`` -> a checked :class:`Param`; a bad row is one InvalidConfig line."""
    name, sep, rule = text.partition("=")
    name = name.strip().rpartition(".")[2]  # "train.lr" and "lr" name the same field
    kind, _, args = rule.strip().partition(":")
    fields = tunable_fields()
    if not sep or not name:
        raise InvalidConfig(f"--param {text!r}: write NAME=KIND:ARGS, e.g. "
                            "lr=loguniform:1e-4:1e-1.")
    if name not in fields:
        raise InvalidConfig(f"--param {text!r}: {name!r} is not a tunable config field; choose "
                            f"from {', '.join(sorted(fields))}.")
    if kind not in KINDS:
        raise InvalidConfig(f"--param {text!r}: kind must be one of {', '.join(KINDS)}.")
    cf = fields[name]
    param = _choice_param(text, cf, args) if kind == "choice" else \
        _range_param(text, cf, kind, args)
    check_param(param, base or RunConfig(), text)
    return param


def _range_param(text: str, cf: Any, kind: str, args: str) -> Param:
    parts = args.split(":")
    if len(parts) != 2:
        raise InvalidConfig(f"--param {text!r}: {kind} takes LOW:HIGH.")
    if cf.kind not in (int, float) or (kind != "int" and cf.kind is int):
        want = "int:LOW:HIGH or choice" if cf.kind is int else "choice:A,B"
        raise InvalidConfig(f"--param {text!r}: {cf.name} is not a float field; use {want}.")
    try:
        low, high = (int(p) if kind == "int" else float(p) for p in parts)
    except ValueError:
        raise InvalidConfig(f"--param {text!r}: LOW and HIGH must be "
                            f"{'whole numbers' if kind == 'int' else 'numbers'}.") from None
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise InvalidConfig(f"--param {text!r}: LOW must be below HIGH.")
    if kind == "loguniform" and low <= 0:
        raise InvalidConfig(f"--param {text!r}: loguniform needs LOW > 0 (a log scale).")
    return Param(cf.name, cf.section, kind, low, high)


def _choice_param(text: str, cf: Any, args: str) -> Param:
    raw = [a.strip() for a in args.split(",") if a.strip()]
    if not raw:
        raise InvalidConfig(f"--param {text!r}: choice takes at least one value, A,B,C.")
    try:
        values = tuple(_typed(cf, v) for v in raw)
    except ValueError as exc:
        raise InvalidConfig(f"--param {text!r}: {exc}.") from None
    if len(set(values)) != len(values):
        raise InvalidConfig(f"--param {text!r}: a choice is listed twice.")
    return Param(cf.name, cf.section, "choice", choices=values)


def _typed(cf: Any, value: str) -> Any:
    """A choice as Optuna stores it: bool, int, float or str (a list field: ``a+b``/none)."""
    if cf.kind is bool:
        if value.lower() not in _TRUE + _FALSE:
            raise ValueError(f"{cf.name} takes true or false, not {value!r}")
        return value.lower() in _TRUE
    if cf.kind is int:
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{cf.name} takes whole numbers, not {value!r}") from None
    if cf.kind is float:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{cf.name} takes numbers, not {value!r}") from None
    allowed = cf.field.metadata.get("choices", ())
    if cf.kind is str:
        if value not in allowed:
            raise ValueError(f"{cf.name} takes {', '.join(allowed)}, not {value!r}")
        return value
    items = [] if value == "none" else value.split("+")  # a list field
    bad = [i for i in items if i not in allowed]
    if bad:
        raise ValueError(f"{cf.name} takes {', '.join(allowed)} joined with +, or none; "
                         f"not {bad[0]!r}")
    return "+".join(items) or "none"


def check_param(param: Param, base: RunConfig, text: str = "") -> None:
    """Every value the row can give (its ends, each choice) makes a valid config."""
    probes = param.choices if param.kind == "choice" else (param.low, param.high)
    for value in probes:
        try:
            apply_params(base.to_dict(), {param.name: value}, [param])
        except InvalidConfig as exc:
            raise InvalidConfig(f"--param {text or param.spec!r}: {exc}") from None


def apply_params(base: dict[str, Any], params: dict[str, Any],
                 space: list[Param]) -> RunConfig:
    """The base config with a trial's ``params`` set (list fields from their ``a+b`` form)."""
    raw = copy.deepcopy(base)
    sections = {p.name: p.section for p in space}
    fields = tunable_fields()
    for name, value in params.items():
        if fields[name].kind is list:
            value = [] if value in ("none", "") else str(value).split("+")
        elif fields[name].kind is int:
            value = int(value)
        raw[sections.get(name, fields[name].section)][name] = value
    return RunConfig.from_dict(raw)


def suggest(trial: Any, space: list[Param]) -> dict[str, Any]:
    """Draw every row through the Optuna ``trial`` (its sampler decides the values)."""
    values = {}
    for p in space:
        if p.kind == "choice":
            values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.kind == "int":
            values[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high))
        else:
            values[p.name] = trial.suggest_float(p.name, p.low, p.high,
                                                 log=p.kind == "loguniform")
    return values


def grid(space: list[Param]) -> dict[str, list[Any]]:
    """The grid sampler's search space: every choice, every integer of an int range."""
    found: dict[str, list[Any]] = {}
    for p in space:
        if p.kind in ("loguniform", "uniform"):
            raise InvalidConfig(f"The grid sampler needs choice: or int: rows; {p.spec} is "
                                f"{p.kind} (give {p.name}=choice:A,B,... instead).")
        found[p.name] = list(p.choices) if p.kind == "choice" else \
            list(range(int(p.low), int(p.high) + 1))
    if not found:
        raise InvalidConfig("The grid sampler needs at least one --param row.")
    if grid_size(found) > GRID_CAP:
        raise InvalidConfig(f"The grid has {grid_size(found)} points (over {GRID_CAP}); use "
                            "fewer choices or another sampler.")
    return found


def grid_size(found: dict[str, list[Any]]) -> int:
    return math.prod(len(v) for v in found.values())


def default_space(base: RunConfig, modality: str, model: Any = None) -> list[Param]:
    """Sensible rows for a model (``model``: its registry ``ModelSpec``): learning rate (log
    scale), batch size, weight decay, optimizer, scheduler, label smoothing; augmentation for
    images; dropout where the model has it; freeze-backbone for transfer models."""
    pretrained = bool(model and model.pretrained_available and base.model.pretrained)
    dropout = model is not None and model.dropout is not None
    lr = (1e-5, 1e-2) if pretrained else (1e-4, 1e-1)
    batches = (16, 32, 64) if modality == "tabular" else (32, 64, 128)
    rows = [f"lr=loguniform:{lr[0]}:{lr[1]}",
            "batch_size=choice:" + ",".join(map(str, batches)),
            "weight_decay=loguniform:1e-6:1e-2",
            "optimizer=choice:adam,adamw,sgd",
            "scheduler=choice:none,cosine",
            "label_smoothing=uniform:0:0.2"]
    if modality == "image":
        rows.append("augment=choice:none,flip+crop")
    if dropout:
        rows.append("dropout=uniform:0:0.5")
    if pretrained:
        rows.append("freeze_backbone=choice:false,true")
    return [parse_param(r, base) for r in rows]


def _num(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _choice_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
