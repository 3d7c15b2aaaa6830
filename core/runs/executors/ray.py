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

from core.errors import InvalidConfig, UserError
from core.runs.processes import PROJECT_ROOT

if TYPE_CHECKING:
    from core.runs.records import Job
    from core.runs.store import Store

log = logging.getLogger(__name__)

RAY_ADDRESS_ENV = "LAB2MARKET_RAY_ADDRESS"
RAY_ADDRESS_SETTING = "ray_address"
_ENDED = {"STOPPED", "SUCCEEDED", "FAILED"}
MISSING_HOME_EXIT = 3
MEMORY_GB_PER_PROCESS = 2.0  # host memory a job reserves per process unless its config says
AGENT_WAIT_S = 60.0  # how long a submit waits for a fresh head's job agent


def ray_address(store: Store) -> str:
    return os.environ.get(RAY_ADDRESS_ENV) or store.get_setting(RAY_ADDRESS_SETTING) or "auto"


def check_ray_address(address: str) -> str:
    """``auto``, ``host:port`` (the GCS) or ``http://host:port`` (the dashboard), trimmed."""
    address = address.strip()
    if not address or any(c.isspace() for c in address):
        raise InvalidConfig(f"{address!r} is not a Ray address: use auto, host:6379 or "
                            "http://host:8265.")
    return address


def submission_id(job: Job) -> str:
    return f"lab2market-{job.id}"


def _client(store: Store) -> Any:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(ray_address(store))


def resource_request(config: Mapping[str, Any] | None, cluster_has_gpus: bool) -> dict[str, Any]:
    """What a job asks Ray for, from its run's config (None: a job with no run config, e.g.
    about a dataset): per process a CPU, plus one per DataLoader worker; a GPU per process for
    a training on CUDA (``device`` cuda, or auto on a cluster that has GPUs); host memory
    ``train.memory_gb``, else :data:`MEMORY_GB_PER_PROCESS` per process (bytes, as Ray counts).

    A DDP run of ``--nproc N`` is one Ray job whose entrypoint (torchrun) starts the N
    processes, so its N GPUs are on one node; across nodes it is torchrun by hand."""
    train = dict((config or {}).get("train") or {})
    data = dict((config or {}).get("data") or {})
    nproc = max(1, int(train.get("nproc") or 1))
    workers = max(0, int(data.get("num_workers") or 0))
    device = str(train.get("device") or "auto")
    wants_gpu = config is not None and (
        device.startswith("cuda") or (device == "auto" and cluster_has_gpus))
    memory_gb = train.get("memory_gb") or MEMORY_GB_PER_PROCESS * nproc
    return {"num_cpus": float(nproc * (1 + workers)),
            "num_gpus": float(nproc if wants_gpu else 0),
            "memory": int(float(memory_gb) * 2**30)}


def resources(store: Store, job: Job) -> dict[str, Any]:
    """The request for ``job``: its run's config for a heavy job (training), none otherwise."""
    config = None
    if job.heavy:
        try:
            config = store.get_run(job.run_id).config
        except Exception:  # noqa: BLE001  (a job about a dataset has no run config)
            config = None
    wants_cuda = config is not None and str(
        config.get("train", {}).get("device", "auto")) == "auto"
    return resource_request(config, wants_cuda and _cluster_has_gpus(store))


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
            entrypoint_num_cpus=ask["num_cpus"], entrypoint_num_gpus=ask["num_gpus"],
            entrypoint_memory=ask["memory"])
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
            if "does not exist" not in str(exc):
                raise
            from core.runs.jobs import START_GRACE_S

            if time.time() - (job.started_at or 0) < START_GRACE_S:
                return None  # claimed moments ago: its submission may not have reached Ray yet
            return "FAILED"

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
