"""Executors: where a claimed job's process runs. One registry; a job records its executor.

``local`` (the default) starts detached processes on this machine; ``ray`` submits each job to a
Ray cluster as a Ray job with its resource request, so Ray places it on a machine with room. The
queue, statuses, progress and results stay in the run store either way: an executor only starts,
recognises and stops the job's process (``spawn``, ``is_alive``, ``stop``).

The choice: ``--executor`` (this command and the jobs it starts), else ``$LAB2MARKET_EXECUTOR``,
else the workspace setting ``executor`` (``queue --executor``, the page control), else local.
A cluster workspace's contract is checked when the choice is made: a remote executor needs a
shared store, so SQLite with ``ray`` is refused with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from core.errors import InvalidConfig
from core.workspace import EXECUTORS

if TYPE_CHECKING:
    from core.runs.records import Job
    from core.runs.store import Store

EXECUTOR_ENV = "LAB2MARKET_EXECUTOR"
EXECUTOR_SETTING = "executor"


class Executor(Protocol):
    name: str

    def spawn(self, store: Store, job: Job, env: Mapping[str, str], log_path: Path) -> None:
        """Start the job's process (``python ARGV --home HOME --job ID``); record what
        finds it again (a pid, a Ray job id)."""

    def is_alive(self, store: Store, job: Job) -> bool | None:
        """Whether the job's process still runs; None when that cannot be told now."""

    def stop(self, store: Store, job: Job, grace: float) -> bool:
        """SIGTERM (the job checkpoints and ends itself), then a kill after ``grace``
        seconds; True when it had to be killed."""


def get_executor(name: str) -> Executor:
    """The executor called ``name`` (imported on use: Ray only when asked for)."""
    if name == "local":
        from core.runs.executors.local import LocalExecutor
        return LocalExecutor()
    if name == "ray":
        from core.runs.executors.ray import RayExecutor
        return RayExecutor()
    raise InvalidConfig(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}.")


def executor_name(store: Store) -> str:
    """Where jobs queued now will run."""
    name = (getattr(store, "executor", None) or os.environ.get(EXECUTOR_ENV)
            or store.get_setting(EXECUTOR_SETTING) or "local")
    check_cluster(name, store.url)
    return name


def set_executor(store: Store, name: str) -> str:
    """Store the workspace's executor (checked against the cluster contract first)."""
    check_cluster(name, store.url)
    store.set_setting(EXECUTOR_SETTING, name)
    return name


def executor_source(store: Store) -> str:
    """Where :func:`executor_name`'s answer comes from: ``--executor``, ``$LAB2MARKET_EXECUTOR``
    (both outrank the workspace setting, so a page cannot change them), the setting, default."""
    if getattr(store, "executor", None):
        return "--executor"
    if os.environ.get(EXECUTOR_ENV):
        return EXECUTOR_ENV
    return "workspace setting" if store.get_setting(EXECUTOR_SETTING) else "default"


def configure(store: Store, name: str | None = None,
              address: str | None = None) -> dict[str, str]:
    """Set the workspace's executor and the Ray cluster's address (``executor`` on the CLI, the
    control on Home), both checked before either is stored; returns where jobs run now."""
    from core.runs.executors.ray import RAY_ADDRESS_SETTING, check_ray_address, ray_address

    if address is not None:
        address = check_ray_address(address)
    if name is not None:
        set_executor(store, name)  # checked against the cluster contract, then stored
    if address is not None:
        store.set_setting(RAY_ADDRESS_SETTING, address)
    return {"executor": executor_name(store), "ray_address": ray_address(store),
            "source": executor_source(store)}


def check_cluster(name: str, store_url: str | None) -> None:
    """A job on another machine reports through the store, so the store must be one every
    machine reaches: PostgreSQL. (The workspace folder must be at the same path on every
    machine too; a Ray job checks that where it lands.)"""
    from core.runs.db import is_postgres

    if name not in EXECUTORS:
        raise InvalidConfig(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}.")
    if name != "local" and not is_postgres(store_url):
        raise InvalidConfig(
            f"--executor {name} needs a PostgreSQL run store that every machine reaches "
            "(--store postgresql://... or $LAB2MARKET_STORE): the workspace's SQLite file must "
            "not be shared over a network filesystem.")


def job_env(store: Store) -> dict[str, str]:
    """What a job's process must inherit to find the same store and executor."""
    env = {}
    if store.url:
        from core.workspace import STORE_ENV
        env[STORE_ENV] = store.url
    if getattr(store, "executor", None):
        env[EXECUTOR_ENV] = store.executor
    return env
