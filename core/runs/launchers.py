"""Typed launchers: the one place that turns a request into a job's command line.

Pages and ``ui/`` call these and never build argv themselves; each returns the queued (or
already started) :class:`~core.runs.records.Job`, whose row the page then watches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.errors import InvalidConfig
from core.runs.jobs import python_core, submit
from core.runs.records import Job
from core.runs.store import Store


def start_evaluate(store: Store, run_id: str, split: str = "test") -> Job:
    """Predict ``split`` once and store it (``evaluate RUN --split S``)."""
    return submit(store, run_id, "evaluate", python_core("evaluate", run_id, "--split", split),
                  key=split)


def start_explain(store: Store, run_id: str, file: str | Path, methods: Sequence[str],
                  target: int | None = None,
                  params: Mapping[str, Mapping[str, Any]] | None = None,
                  key: str = "") -> Job:
    """Explain one input with ``methods`` (per-method ``params``); ``target`` None: predicted."""
    argv = ["explain", run_id, str(file), "--method", ",".join(methods)]
    if target is not None:
        argv += ["--target", str(int(target))]
    for method, values in (params or {}).items():
        for name, value in values.items():
            argv += ["--param", f"{method}.{name}={value}"]
    return submit(store, run_id, "explain", python_core(*argv), key=key)


def start_explain_summary(store: Store, run_id: str, target: int, rows: int,
                          key: str = "") -> Job:
    """SHAP over ``rows`` test rows of a tabular run, for class ``target``."""
    argv = ["explain", run_id, "--summary", "--target", str(int(target)), "--rows", str(rows)]
    return submit(store, run_id, "explain", python_core(*argv), key=key)


def start_export(store: Store, run_id: str, fmt: str, quantize: str | None = None) -> Job:
    """Export a checked bundle (``export RUN --format onnx|torchscript [--quantize int8]``)."""
    argv = ["export", run_id, "--format", fmt] + (["--quantize", quantize] if quantize else [])
    return submit(store, run_id, "export", python_core(*argv), key=f"{fmt}-{quantize or 'fp32'}")


def start_bench(store: Store, run_id: str, budget_s: float) -> Job:
    """Eager, TorchScript, ONNX fp32 and int8 side by side (``bench RUN``)."""
    return submit(store, run_id, "bench",
                  python_core("bench", run_id, "--budget", str(float(budget_s))))


def start_variants(store: Store, run_id: str, budget_s: float = 2.0) -> Job:
    """Measure a run and its pruned / distilled variants side by side (``variants RUN``)."""
    return submit(store, run_id, "variants",
                  python_core("variants", run_id, "--budget", str(float(budget_s))))


def start_serve(store: Store, run_id: str, bundle: str, port: int, max_concurrency: int = 4,
                token_file: str | Path | None = None) -> Job:
    """Serve one of the run's bundles on 127.0.0.1:``port`` until cancelled."""
    argv = ["serve", run_id, "--bundle", bundle, "--port", str(int(port)),
            "--max-concurrency", str(int(max_concurrency))]
    if token_file is not None:
        argv += ["--token-file", str(token_file)]  # never the token itself on a command line
    return submit(store, run_id, "serve", python_core(*argv), key=bundle)


def start_ensemble(store: Store, member_ids: Sequence[str], method: str, name: str = "") -> Job:
    """Combine ``member_ids`` into an ensemble run (``ensemble RUN RUN ... --method M``): fit on
    val, evaluate on val and test. The job hangs off the first member; its result names the
    ensemble run (``result["run_id"]``)."""
    if not member_ids:
        raise InvalidConfig("An ensemble needs at least two member runs.")
    argv = ["ensemble", *member_ids, "--method", method]
    if name:
        argv.append(f"--name={name}")  # one token: a name that starts with '-' is still a name
    return submit(store, member_ids[0], "ensemble", python_core(*argv), key=method)


def start_health(store: Store, dataset: str, run_id: str | None = None,
                 refresh: bool = False) -> Job:
    """Check dataset ``dataset`` (``datasets health NAME [--run RUN]``), a job about the dataset
    (``dataset:NAME``), keyed by the run. A check already under way for the same dataset and
    run is returned rather than started twice (a double click)."""
    from core.data.registry import get_info
    from core.runs.jobs import DATASET_SUBJECT
    from core.workspace import Workspace

    get_info(Workspace.of(store), dataset)  # a clear error for an unknown dataset
    if run_id is not None:
        store.get_run(run_id)
    subject, key = f"{DATASET_SUBJECT}{dataset}", run_id or ""
    running = store.latest_job(subject, "health", key)
    if running is not None and running.is_active:
        return running
    argv = ["datasets", "health", dataset, *(["--run", run_id] if run_id else []),
            *(["--refresh"] if refresh else [])]
    return submit(store, subject, "health", python_core(*argv), key=key)

