"""The cluster executor: each job is a Ray job (Ray's Jobs API), placed by Ray on a machine with
the CPUs and GPUs it asks for.

A Ray job belongs to the cluster, not to the process that submitted it, so the dashboard or a
CLI command can submit and exit, and any machine can later ask Ray about it by its submission id
(``lab2market-<job id>``). The job's process is the same ``python -m core ... --home HOME --job
ID`` as a local one: it reports to the shared PostgreSQL store, writes checkpoints and logs into
the shared workspace folder, and ends with its own terminal status. Cancel is Ray's stop
(SIGTERM, the job checkpoints and ends ``cancelled``; Ray's SIGKILL after the grace); a job Ray
reports ended while the store still says running is ``interrupted`` (reconcile), and ``resume``
continues it from its checkpoint, on whichever machine Ray picks.

The address: ``$LAB2MARKET_RAY_ADDRESS``, else the workspace setting ``ray_address``, else
``auto`` (the cluster this machine joined with ``ray start``). Ray is imported only here.
"""

from __future__ import annotations

import functools
import logging
import os
import shlex
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import UserError
from core.runs.processes import PROJECT_ROOT

if TYPE_CHECKING:
    from core.runs.records import Job
    from core.runs.store import Store

log = logging.getLogger(__name__)

RAY_ADDRESS_ENV = "LAB2MARKET_RAY_ADDRESS"
RAY_ADDRESS_SETTING = "ray_address"
_ENDED = {"STOPPED", "SUCCEEDED", "FAILED"}
MISSING_HOME_EXIT = 3
AGENT_WAIT_S = 60.0  # how long a submit waits for a fresh head's job agent


def ray_address(store: Store) -> str:
    return os.environ.get(RAY_ADDRESS_ENV) or store.get_setting(RAY_ADDRESS_SETTING) or "auto"


def submission_id(job: Job) -> str:
    return f"lab2market-{job.id}"


def _client(store: Store) -> Any:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(ray_address(store))


def resources(store: Store, job: Job) -> dict[str, float]:
    """What the job asks Ray for: a CPU per process; a GPU per process for a training job on
    CUDA (``device`` cuda, or auto on a cluster that has GPUs). A DDP run of ``--nproc N`` asks
    for N GPUs as one Ray job, so they are on one node (several nodes: torchrun, by hand)."""
    train: dict[str, Any] = {}
    if job.heavy:
        try:
            train = store.get_run(job.run_id).config.get("train", {})
        except Exception:  # noqa: BLE001  (a job about a dataset has no run config)
            train = {}
    nproc = max(1, int(train.get("nproc", 1)))
    device = str(train.get("device", "cpu"))
    wants_gpu = device.startswith("cuda") or (device == "auto" and _cluster_has_gpus(store))
    return {"num_cpus": float(nproc), "num_gpus": float(nproc if wants_gpu else 0)}


def _cluster_has_gpus(store: Store) -> bool:
    try:
        from ray.util.state import list_nodes

        nodes = list_nodes(address=_client(store).get_address())
        return any(n.resources_total.get("GPU", 0) > 0 for n in nodes)
    except Exception as exc:  # noqa: BLE001  (unknown: ask for none, Ray places it anywhere)
        log.warning("could not list the Ray cluster's GPUs: %s", exc)
        return False


class RayExecutor:
    name = "ray"

    def spawn(self, store: Store, job: Job, env: Mapping[str, str], log_path: Path) -> None:
        home = shlex.quote(str(store.home))
        argv = [sys.executable, *job.argv, "--home", str(store.home), "--job", job.id]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # The contract of a cluster workspace: the same folder at the same path on every
        # machine. Where it is missing the job ends at once, saying so in Ray's job log.
        entrypoint = (
            f"if [ ! -d {home} ]; then echo 'the workspace folder {store.home} is not on this "
            f"machine: mount the shared folder at the same path on every machine' >&2; "
            f"exit {MISSING_HOME_EXIT}; fi; cd {shlex.quote(str(PROJECT_ROOT))} && "
            f"exec {shlex.join(argv)} >> {shlex.quote(str(log_path))} 2>&1")
        ask = resources(store, job)
        from core.runs.jobs import CANCEL_GRACE_S

        # The job queues the next one when it ends: it must find the same cluster.
        env_vars = {**env, RAY_ADDRESS_ENV: ray_address(store),
                    "RAY_JOB_STOP_WAIT_TIME_S": str(int(CANCEL_GRACE_S))}
        submit = functools.partial(
            _client(store).submit_job,
            entrypoint=entrypoint, submission_id=submission_id(job),
            runtime_env={"env_vars": env_vars}, metadata={"lab2market_job": job.id},
            entrypoint_num_cpus=ask["num_cpus"], entrypoint_num_gpus=ask["num_gpus"])
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                submit()
                return
            except RuntimeError as exc:
                # A head that has just started answers 500 "No available agent" until its job
                # agent is up (seconds): wait for it rather than fail the user's first job.
                if "No available agent" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise UserError(f"The Ray cluster at {ray_address(store)} has no job agent "
                                    f"ready after {AGENT_WAIT_S:.0f} s; check `ray status` and "
                                    "retry.") from None
                time.sleep(1.0)

    def status(self, store: Store, job: Job) -> str | None:
        """Ray's word on the job (PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED), or None when
        the cluster cannot be asked now."""
        try:
            return str(_client(store).get_job_status(submission_id(job)).value)
        except (ConnectionError, TimeoutError) as exc:
            log.warning("Ray cluster unreachable: %s", exc)
            return None
        except RuntimeError as exc:  # the cluster does not know it (restarted): it is gone
            if "does not exist" in str(exc):
                return "FAILED"
            raise

    def is_alive(self, store: Store, job: Job) -> bool | None:
        status = self.status(store, job)
        return None if status is None else status not in _ENDED

    def stop(self, store: Store, job: Job, grace: float) -> bool:
        client = _client(store)
        try:
            client.stop_job(submission_id(job))
        except RuntimeError as exc:  # already gone
            log.info("Ray job %s: %s", submission_id(job), exc)
        deadline = time.monotonic() + grace + 10
        while time.monotonic() < deadline and self.is_alive(store, job) is not False:
            time.sleep(0.2)
        # Stopped cleanly when the job recorded its own end (``cancelled`` after its checkpoint).
        return store.get_job(job.id).is_active
