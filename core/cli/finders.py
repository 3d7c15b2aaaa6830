"""``python -m core lr-find ...`` and ``python -m core batch-find ...``: pick a learning rate and a
batch size before training. Both take the train flags (the same config a run would use).

``lr-find`` records the range test as a run of kind ``lr_find`` (its curve and readings stay in
the store, where the Train page draws them); it runs in this process, or in the background with
``--detach``. ``batch-find`` records nothing: it prints what it measured.
"""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.base import Result, add_command, command, progress
from core.cli.flags import add_config_flags, config_from_args


def add_parsers(sub) -> None:
    p = add_command(sub, "lr-find", "learning-rate range test: loss against an exponentially "
                                    "growing LR, with a suggested rate")
    p.add_argument("--config", help="a run's config.json to start from (flags override it)")
    p.add_argument("--steps", type=int, default=200, help="steps of the test (default: 200)")
    p.add_argument("--start-lr", type=float, default=1e-7, help="first rate (default: 1e-7)")
    p.add_argument("--end-lr", type=float, default=10.0, help="last rate (default: 10)")
    p.add_argument("--detach", action="store_true", help="run it as a background job")
    p.add_argument("--run", help=argparse.SUPPRESS)  # the job's body: test this lr_find run
    add_config_flags(p)
    b = add_command(sub, "batch-find", "largest batch that fits on the GPU (binary search on "
                                       "out-of-memory), or throughput per batch size on CPU")
    b.add_argument("--config", help="a run's config.json to start from (flags override it)")
    b.add_argument("--max-batch", type=int, default=4096,
                   help="largest batch size to try (default: 4096)")
    add_config_flags(b)


@command("lr-find")
def lr_find(args: argparse.Namespace) -> Result:
    from core.train.lr_finder import check_options, create_lr_find, run_lr_find, start_lr_find

    options = {"steps": args.steps, "start_lr": args.start_lr, "end_lr": args.end_lr}
    check_options(**options)  # before a run is recorded for it
    store = args.ws.store
    if args.run:
        run_id = args.run
    elif args.detach:
        job = start_lr_find(store, config_from_args(args), **options)
        return Result({"run_id": job.run_id, "job_id": job.id},
                      f"LR range test {job.run_id} queued (`python -m core status "
                      f"{job.run_id}`)")
    else:
        run_id = create_lr_find(store, config_from_args(args)).id
    with progress(args, "lr-find") as bar:
        found = run_lr_find(args.ws, run_id, progress=bar, **options)
    return Result(found, _lr_text(found))


def _lr_text(found: dict[str, Any]) -> str:
    def fmt(value: float | None) -> str:
        return "none (the loss never fell: widen --start-lr/--end-lr)" if value is None \
            else f"{value:.2e}"
    return (f"{found['run_id']}: suggested --lr {fmt(found['suggestion'])} (minimum / 10); "
            f"steepest descent: {fmt(found['steepest'])}; {found['steps']} steps, "
            f"{found['stop_reason']}")


@command("batch-find")
def batch_find(args: argparse.Namespace) -> Result:
    from core.train.batch_finder import find_batch_size

    config = config_from_args(args)
    with progress(args, "batch-find") as bar:
        found = find_batch_size(args.ws, config, max_batch=args.max_batch, progress=bar)
    lines = [f"{found['device']} ({found['amp']}): {found['mode']}"]
    for row in found["tried"]:
        if not row["fits"]:
            lines.append(f"  batch {row['batch_size']:>6}: out of memory")
            continue
        lines.append(f"  batch {row['batch_size']:>6}: {row['samples_per_s']:9.0f} samples/s"
                     + (f", peak {row['peak_mb']:.0f} MB" if "peak_mb" in row else ""))
    lines.append(f"suggested --batch-size {found['suggested_batch_size']}")
    return Result(found, "\n".join(lines))
