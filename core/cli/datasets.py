"""``python -m core datasets list | datasets import NAME --from DIR|ZIP|CSV [--target COL]``."""

from __future__ import annotations

import argparse

from core.cli.base import Result, add_command, add_group, command, progress


def add_parsers(sub) -> None:
    ds = add_group(sub, "datasets", "list or import datasets")
    add_command(ds, "list", "built-in and imported datasets", group="datasets")
    imp = add_command(ds, "import", "import a folder, zip or CSV", group="datasets")
    imp.add_argument("name")
    imp.add_argument("--from", dest="source", required=True, help="DIR, ZIP or CSV")
    imp.add_argument("--target", help="label column (CSV)")


@command("datasets list")
def datasets_list(args: argparse.Namespace) -> Result:
    from core.data import list_datasets

    infos = list_datasets(args.ws)
    lines = [f"{i.name:16} {i.modality:8} {len(i.classes):3} classes  "
             f"{sum(i.split_counts.values()):6} samples  {'built-in' if i.builtin else 'imported'}"
             for i in infos]
    return Result({"datasets": [i.to_dict() for i in infos]}, "\n".join(lines))


@command("datasets import")
def datasets_import(args: argparse.Namespace) -> Result:
    from core.data import import_dataset

    with progress(args, f"import {args.name}") as bar:
        info = import_dataset(args.ws, args.name, args.source, target=args.target,
                              progress=bar)
    return Result(info.to_dict(), f"Imported {info.name}: {info.modality}, "
                                  f"{len(info.classes)} classes, splits {info.split_counts}")
