"""The train flags, generated from the config dataclasses, and the config they build.

Every field of ``DataConfig``, ``ModelConfig`` and ``TrainConfig`` gets a flag named after it
(``step_size`` -> ``--step-size``; ``metadata["flag"]`` renames one), with its type, choices and
help taken from the dataclass. Flags default to None, meaning "not given": the value then comes
from ``--config FILE``, else from the dataclass default. Bool fields are ``--x/--no-x``; list
fields take comma-separated values.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import types
import typing
from pathlib import Path
from typing import Any

from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.errors import InvalidConfig

SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
MODEL_DEST = "config.model.name"  # --model: when not given, chosen from the data's modality


@dataclasses.dataclass(frozen=True)
class ConfigFlag:
    """One config field as a command-line flag."""

    section: str  # "data", "model" or "train"
    name: str  # the dataclass field
    flag: str  # e.g. "--step-size"
    kind: type  # int, float, str, bool or list (of str)
    optional: bool  # the field accepts None
    field: dataclasses.Field

    @property
    def dest(self) -> str:
        # Namespaced so a config field can never clash with a global option or another flag.
        return f"config.{self.section}.{self.name}"


@functools.cache
def config_flags() -> tuple[ConfigFlag, ...]:
    """Every config field, in dataclass order."""
    found = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind, optional = _kind(hints[f.name])
            flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
            found.append(ConfigFlag(section, f.name, flag, kind, optional, f))
    return tuple(found)


def _kind(hint: Any) -> tuple[type, bool]:
    """``int | None`` -> (int, True); ``list[str]`` -> (list, False)."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"no flag for a field of type {hint}")
        return _kind(rest[0])[0], True
    if typing.get_origin(hint) is list:
        return list, False
    if hint in (int, float, str, bool):
        return hint, False
    raise TypeError(f"no flag for a field of type {hint}")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per config field, grouped by section in ``--help``."""
    for section in SECTIONS:
        group = parser.add_argument_group(f"{section} config")
        for cf in config_flags():
            if cf.section == section:
                group.add_argument(cf.flag, dest=cf.dest, default=None, help=_help(cf),
                                   **_argparse_kwargs(cf))


def _argparse_kwargs(cf: ConfigFlag) -> dict[str, Any]:
    choices = cf.field.metadata.get("choices")
    if cf.kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    if cf.kind is list:
        return {"type": _comma_list(choices), "metavar": "A,B,..."}
    if choices:
        return {"type": cf.kind, "choices": choices}
    # argparse would show the namespaced dest; show the flag's own name, as for other options
    return {"type": cf.kind, "metavar": cf.flag.lstrip("-").replace("-", "_").upper()}


def _help(cf: ConfigFlag) -> str:
    doc = cf.field.metadata.get("doc", "")
    choices = cf.field.metadata.get("choices")
    if cf.kind is list and choices:
        doc += f" ({', '.join(choices)})"
    default = cf.field.default
    if default is not dataclasses.MISSING and default not in (None, False) \
            and "default" not in doc:
        doc += f" (default: {default})"
    return doc.replace("%", "%%")  # argparse formats help with %


def _comma_list(choices: tuple[str, ...] | None):
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        bad = [item for item in items if choices and item not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)}; choose from "
                                             f"{', '.join(choices)}")
        return items
    return parse


# -- the config a train command runs -------------------------------------------------------------


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """A config file (if any), then every flag the user gave on top of it."""
    raw = RunConfig().to_dict()
    if args.config:
        for section, values in read_config_file(args.config).items():
            raw.setdefault(section, {}).update(values)  # unknown names are refused below
    for cf in config_flags():
        value = getattr(args, cf.dest, None)
        if value is not None:
            raw[cf.section][cf.name] = value
    if getattr(args, MODEL_DEST) is None and not args.config:
        from core.data import get_info

        modality = get_info(args.ws, raw["data"]["dataset"]).modality
        raw["model"]["name"] = "mlp" if modality == "tabular" else "smallcnn"
    if not args.config:
        return RunConfig.from_dict(raw)
    try:
        return RunConfig.from_dict(raw)
    except InvalidConfig as exc:
        raise InvalidConfig(f"--config {args.config}: {exc}") from None


def read_config_file(path: str) -> dict[str, dict[str, Any]]:
    """The sections of a config JSON file, each value checked against its field's type."""
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as exc:
        raise InvalidConfig(f"--config {path}: cannot read it ({exc.strerror or exc}); give a "
                            "run's config.json.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if hasattr(exc, "lineno") else ""
        raise InvalidConfig(f"--config {path}: not valid JSON{where}; give a run's "
                            "config.json.") from None
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise InvalidConfig(f"--config {path}: must be a JSON object of sections "
                            f"({', '.join(SECTIONS)}), each an object of fields.")
    by_name = {(cf.section, cf.name): cf for cf in config_flags()}
    for section, values in raw.items():
        for name, value in values.items():
            cf = by_name.get((section, name))
            if cf is not None and not _fits(cf, value):
                raise InvalidConfig(f"--config {path}: {section}.{name} = {value!r} is not "
                                    f"{_expected(cf)}.")
    return raw


def _fits(cf: ConfigFlag, value: Any) -> bool:
    if value is None:
        return cf.optional
    if cf.kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if cf.kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if cf.kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, cf.kind)


def _expected(cf: ConfigFlag) -> str:
    names = {list: "a list of strings", int: "an integer", float: "a number", str: "a string",
             bool: "true or false"}
    kind = names[cf.kind]
    return kind + (" or null" if cf.optional else "")
