"""``python -m core datasets list | import NAME --from DIR|ZIP|CSV [--target COL] | health NAME
[--run RUN] | fix NAME --remove KIND --as NEW``."""

from __future__ import annotations

import argparse

from core.cli.base import Result, add_command, add_group, command, progress
from core.errors import InvalidConfig, UserError


def add_parsers(sub) -> None:
    ds = add_group(sub, "datasets", "list, import, check and fix datasets")
    add_command(ds, "list", "built-in and imported datasets", group="datasets")
    imp = add_command(ds, "import", "import a folder, zip or CSV", group="datasets")
    imp.add_argument("name")
    imp.add_argument("--from", dest="source", required=True, help="DIR, ZIP or CSV")
    imp.add_argument("--target", help="label column (CSV)")
    add_health_parsers(ds)


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


# -- health --------------------------------------------------------------------------------------


def add_health_parsers(ds) -> None:
    # No argparse choices: the kinds are core's registries (validated there, with the list),
    # and importing them here would load core.data for every `--help`.
    check = add_command(ds, "health", "check a dataset (or a CSV before import) for problems",
                        group="datasets")
    check.add_argument("name", nargs="?", help="the dataset (or give --from CSV)")
    check.add_argument("--run", help="also rank likely label errors with this run's "
                                     "out-of-sample probabilities (CV folds, else val)")
    check.add_argument("--refresh", action="store_true", help="recompute even if unchanged")
    check.add_argument("--from", dest="source", metavar="CSV", help="a CSV not imported yet")
    check.add_argument("--target", help="its label column (with --from)")
    fix = add_command(ds, "fix", "make a repaired copy of a dataset as a new dataset",
                      group="datasets")
    fix.add_argument("name", nargs="?", help="the dataset (or give --from CSV)")
    fix.add_argument("--as", dest="new_name", metavar="NEW", help="the new dataset's name "
                     "(default: NAME-v2)")
    fix.add_argument("--remove", action="append", default=[], metavar="KIND",
                     help="what the health report found, to leave out, e.g. "
                          "cross-split-duplicates or exact-duplicates (repeatable)")
    fix.add_argument("--exclude", action="append", default=[], metavar="ID",
                     help="a sample id to leave out (repeatable)")
    fix.add_argument("--relabel", action="append", default=[], metavar="ID=CLASS",
                     help="give a sample another class (repeatable)")
    fix.add_argument("--drop-columns", default="", metavar="A,B", help="table columns to drop")
    fix.add_argument("--from", dest="source", metavar="CSV", help="a CSV to import repaired")
    fix.add_argument("--target", help="its label column (with --from)")
    fix.add_argument("--impute", metavar="HOW", help="fill missing values (with --from): "
                                                       "median, mean, most-frequent, drop-rows")


@command("datasets health")
def datasets_health(args: argparse.Namespace) -> Result:
    from core.data.health import check_csv, health

    if args.source:
        report = check_csv(args.source, args.target)
    else:
        _need_name(args, "health")
        with progress(args, f"health {args.name}") as bar:
            report = health(args.ws, args.name, args.run, bar, args.refresh)
    payload = report if not args.job else _summary(report)  # a job's row keeps a summary
    return Result(payload, health_text(report, args.name or args.source))


@command("datasets fix")
def datasets_fix(args: argparse.Namespace) -> Result:
    from core.data.health import (
        check_removals,
        dataset_report,
        import_repaired_csv,
        make_version,
        removal_samples,
        resolve_ids,
        suggest_version_name,
    )
    from core.data.registry import load_dataset

    drop = [c.strip() for c in args.drop_columns.split(",") if c.strip()]
    if args.source:
        if not args.new_name:
            raise InvalidConfig("Name the repaired dataset with --as NEW.")
        with progress(args, f"import {args.new_name}") as bar:
            info = import_repaired_csv(args.ws, args.new_name, args.source, args.target,
                                       args.impute, drop, bar)
        return Result(info.to_dict(), f"Imported the repaired {args.source} as {info.name}.")
    _need_name(args, "fix")
    check_removals(args.remove)
    new_name = args.new_name or suggest_version_name(args.ws, args.name)
    with progress(args, f"fix {args.name}") as bar:
        remove = set()
        if args.remove:
            remove = removal_samples(dataset_report(args.ws, args.name, bar), args.remove)
            if not remove:
                raise UserError(f"{args.name} has no {' or '.join(args.remove)}: nothing to "
                                "remove, no new version made.")
        dataset = load_dataset(args.ws, args.name)
        remove |= set(resolve_ids(dataset, args.exclude).values())
        pairs = [_relabel_pair(text) for text in args.relabel]
        where = resolve_ids(dataset, [sid for sid, _ in pairs])
        relabel = {where[sid]: cls for sid, cls in pairs}
        info = make_version(args.ws, args.name, new_name, remove, relabel, drop,
                            reasons=args.remove, progress=bar)
    return Result({**info.to_dict(), "parent": args.name, "removed": len(remove),
                   "relabelled": len(relabel)},
                  f"Made {info.name} from {args.name}: {len(remove)} removed, {len(relabel)} "
                  f"relabelled; splits {info.split_counts}.")


def _need_name(args: argparse.Namespace, verb: str) -> None:
    if not args.name:
        raise InvalidConfig(f"datasets {verb}: name a dataset, or give --from CSV --target COL.")


def _relabel_pair(text: str) -> tuple[str, str]:
    sample, sep, cls = text.rpartition("=")
    if not sep or not sample or not cls:
        raise InvalidConfig(f"--relabel {text!r}: write it as ID=CLASS.")
    return sample, cls


def _summary(report: dict) -> dict:
    return {"dataset": report["dataset"], "counts": report["counts"],
            "checks": [f["check"] for f in report["findings"]],
            "label_issues": len(report.get("labels", {}).get("items", []))}


def health_text(report: dict, name: str) -> str:
    """The report for a person: each finding, its fix as a command, the top label errors."""
    lines = [f"{report['dataset']}: {report['samples']} samples; "
             + ", ".join(f"{n} {s}" for s, n in report["counts"].items())]
    for f in report["findings"]:
        lines.append(f"[{f['severity']}] {f['title']}\n  {f['message']}")
        fix = f.get("fix") or {}
        if fix.get("args"):
            lines.append(f"  fix: python -m core datasets fix {name} {' '.join(fix['args'])} "
                         f"--as NEW")
    for split, v in report.get("inflation", {}).items():
        lines.append(f"{split} accuracy {v['accuracy']:.3f}, without the {v['copies']} copies "
                     f"{v['accuracy_without']:.3f}")
    labels = report.get("labels")
    if labels:
        lines.append(f"{len(labels['items'])} likely label errors among {labels['checked']} "
                     f"samples ({labels['source']}):")
        lines += [f"  {i['id']}: given {i['given']}, suggested {i['suggested']} "
                  f"({i['confidence']:.2f})" for i in labels["items"][:20]]
    return "\n".join(lines)
