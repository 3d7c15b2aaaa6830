"""A real local Ray cluster for the tests and benchmarks: ``ray start --head`` in a temporary
folder, every port on 127.0.0.1, and at the end exactly the processes it started are stopped
(found by that folder in their command line: ``ray stop`` would stop any Ray on the machine)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import free_port, wait_for


def processes_under(folder: str) -> list[int]:
    """Pids whose command line names ``folder``: the cluster this test started, nothing else."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if folder in cmdline.read_bytes().decode(errors="replace"):
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return [p for p in pids if p != os.getpid()]


@contextmanager
def ray_head(num_cpus: int = 2) -> Iterator[str]:
    """A one-node Ray cluster; yields its dashboard address (the Jobs API)."""
    ray = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    folder = tempfile.mkdtemp(prefix="l2m-ray-")
    dashboard = free_port()
    cmd = [ray, "start", "--head", "--num-cpus", str(num_cpus), "--num-gpus", "0",
           "--temp-dir", folder, "--port", str(free_port()), "--node-ip-address", "127.0.0.1",
           "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
           "--dashboard-port", str(dashboard),
           "--dashboard-agent-listen-port", str(free_port()),
           "--ray-client-server-port", str(free_port()), "--disable-usage-stats"]
    # Its own session: Ray's daemons must never signal the test's process group.
    started = subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                             start_new_session=True)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        address = f"http://127.0.0.1:{dashboard}"
        from ray.job_submission import JobSubmissionClient

        wait_for(lambda: _reachable(JobSubmissionClient, address), timeout=120, interval=1,
                 message="the Ray dashboard")
        yield address
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in processes_under(folder):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(2)
        shutil.rmtree(folder, ignore_errors=True)


def _reachable(client_class, address: str) -> bool:
    try:
        client_class(address).list_jobs()
        return True
    except Exception:  # noqa: BLE001  (not up yet)
        return False
