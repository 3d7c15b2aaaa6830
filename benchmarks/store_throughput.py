"""What scaling out costs and buys: store throughput SQLite vs PostgreSQL, job start local vs Ray.

Prints one JSON object, everything measured in one run, side by side:

* ``store``: ``--writers`` processes logging metric rows (10 per flush, plus a run update
  each time, as the trainer does) for ``--seconds`` while ``--readers`` processes poll every
  50 ms as live charts do, on SQLite and on PostgreSQL (a real server started here, initdb +
  pg_ctl in a temporary folder, ``synchronous_commit=off`` like SQLite's WAL ``NORMAL``): metric
  rows written per second, errors, rows lost (written minus found). Both engines' clients run
  on this machine, so SQLite (in-process, no round trip) is the ceiling; what PostgreSQL buys
  is many machines writing at once.
* ``job_start``: submit to first metric row of a 1-epoch digits training (``train --detach``),
  with the local executor and with Ray (a ``ray start --head`` started here), both on the
  PostgreSQL store, so the executor is the only difference.

Usage: ``python benchmarks/store_throughput.py [--seconds 30] [--writers 4] [--readers 20]
[--no-ray]``. Needs Debian's ``postgresql`` package (and Ray for ``job_start``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from pg_support import start_server  # noqa: E402
from store_load import hammer  # noqa: E402

from core.runs.store import Store  # noqa: E402
from core.workspace import STORE_ENV  # noqa: E402


def store_figures(url: str | None, args: argparse.Namespace) -> dict:
    if url:
        os.environ[STORE_ENV] = url
    else:
        os.environ.pop(STORE_ENV, None)
    with tempfile.TemporaryDirectory(prefix="l2m-bench-") as home:
        out = hammer(home, writers=args.writers, readers=args.readers, seconds=args.seconds)
        store = out["setup"]
        written = {r[1]: r[2] for r in out["results"] if r[0] == "rows"}
        lost = sum(n - store.count_metrics(run_id) for run_id, n in written.items())
        errors = [r[2] for r in out["results"] if r[0] == "error"]
        store.close()
    return {"rows_per_s": round(out["rows_per_s"]), "rows": sum(written.values()),
            "errors": len(errors), "lost_rows": lost}


def job_start(url: str, executor: str, ray_address: str | None) -> float:
    """Seconds from `train --detach` to the run's first metric row."""
    env = {**os.environ, STORE_ENV: url}
    with tempfile.TemporaryDirectory(prefix="l2m-bench-") as home:
        base = [sys.executable, "-m", "core", "--home", home, "--json"]
        if executor == "ray":
            subprocess.run([*base, "executor", "ray", "--ray-address", ray_address], env=env,
                           cwd=ROOT, check=True, capture_output=True)
        start = time.perf_counter()
        done = subprocess.run([*base, "train", "--dataset", "digits", "--epochs", "1",
                               "--detach"], env=env, cwd=ROOT, check=True,
                              capture_output=True, text=True)
        run_id = json.loads(done.stdout)["run_id"]
        with Store(home, url=url) as store:
            while store.count_metrics(run_id) == 0:
                if time.perf_counter() - start > 600:
                    raise TimeoutError("no metric row after 600 s")
                time.sleep(0.05)
            seconds = time.perf_counter() - start
            while store.get_run(run_id).is_active:  # leave nothing running behind
                time.sleep(0.2)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    server = start_server()
    try:
        sqlite = store_figures(None, args)
        postgres = store_figures(server.database("bench_store"), args)
        result = {"settings": vars(args), "cpus": os.cpu_count(),
                  "load_avg_1m_before": round(os.getloadavg()[0], 2),
                  "store": {"sqlite": sqlite, "postgresql": postgres,
                            "postgresql_over_sqlite": round(
                                postgres["rows_per_s"] / max(1, sqlite["rows_per_s"]), 2)}}
        local = job_start(server.database("bench_local"), "local", None)
        result["job_start_s"] = {"local": round(local, 2)}
        if not args.no_ray:
            from ray_support import ray_head

            with ray_head() as address:
                ray = job_start(server.database("bench_ray"), "ray", address)
            result["job_start_s"].update(ray=round(ray, 2), ray_over_local=round(ray / local, 2))
    finally:
        server.close()
    # The box may be shared: the load says how much of it the figures had.
    result["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
