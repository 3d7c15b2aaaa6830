"""The default executor: a detached process on this machine (``core.runs.processes``)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from core.runs import warm
from core.runs.processes import is_alive, signal_group, spawn_detached, wait_dead

if TYPE_CHECKING:
    from core.runs.records import Job
    from core.runs.store import Store

log = logging.getLogger(__name__)


class LocalExecutor:
    name = "local"

    def spawn(self, store: Store, job: Job, env: Mapping[str, str], log_path: Path) -> None:
        argv = [*job.argv, "--home", str(store.home), "--job", job.id]
        # A fork of the warm parent (torch already imported) when there is one, else cold.
        pid, start = warm.spawn(argv, log_path, env) or spawn_detached(argv, log_path, env)
        store.update_job(job.id, pid=pid, pid_start=start)

    def is_alive(self, store: Store, job: Job) -> bool | None:
        return job.pid is not None and is_alive(job.pid, job.pid_start)

    def stop(self, store: Store, job: Job, grace: float) -> bool:
        if not (job.pid and is_alive(job.pid, job.pid_start)):
            return False
        signal_group(job.pid, signal.SIGTERM)
        if wait_dead(job.pid, job.pid_start, grace):
            return False
        log.warning("Job %s ignored SIGTERM for %.0f s; killing it", job.id, grace)
        signal_group(job.pid, signal.SIGKILL)
        wait_dead(job.pid, job.pid_start, 5.0)
        return True
