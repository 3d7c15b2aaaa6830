"""Many writer and reader processes on one run store: the load of a busy team, for the store
tests (a few seconds) and ``benchmarks/store_throughput.py`` (30 s)."""

from __future__ import annotations

import multiprocessing
import time

from core.config import RunConfig
from core.runs.store import Store


def _writer(home: str, run_id: str, seconds: float, out) -> None:
    try:
        with Store(home) as store:
            step, deadline = 0, time.monotonic() + seconds
            while time.monotonic() < deadline:
                store.log_metrics(run_id, [(step + i, "train/loss", 0.1) for i in range(10)])
                store.update_run(run_id, step=step, heartbeat=time.time(),
                                 summary={"writer": step})
                step += 10
            out.put(("rows", run_id, step))
    except BaseException as exc:  # noqa: BLE001  (reported to the parent, which fails)
        out.put(("error", run_id, repr(exc)))


def _reader(home: str, run_ids: list[str], stop, out) -> None:
    try:
        with Store(home) as store:
            reads, seen = 0, dict.fromkeys(run_ids, -1)
            while not stop.is_set():
                for run_id in run_ids:  # as a live chart does: the rows newer than it has
                    new = store.get_metrics(run_id, after_step=seen[run_id])
                    seen[run_id] = max((s for v in new.values() for s, _ in v),
                                       default=seen[run_id])
                    store.get_run(run_id)
                store.list_runs(limit=10)
                reads += 1
                time.sleep(0.05)
            out.put(("reads", None, reads))
    except BaseException as exc:  # noqa: BLE001
        out.put(("error", None, repr(exc)))


def hammer(home, writers: int = 4, readers: int = 20, seconds: float = 5.0) -> dict:
    """``writers`` processes log metrics for ``seconds`` while ``readers`` processes poll; returns
    the rows each writer wrote, any error, and the rows written per second."""
    setup = Store(home)
    run_ids = [setup.create_run(RunConfig().to_dict()).id for _ in range(writers)]
    ctx = multiprocessing.get_context("fork")
    out, stop = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_reader, args=(str(home), run_ids, stop, out))
             for _ in range(readers)]
    procs += [ctx.Process(target=_writer, args=(str(home), r, seconds, out)) for r in run_ids]
    for p in procs:
        p.start()
    start = time.monotonic()
    results = [out.get(timeout=seconds + 120) for _ in range(writers)]
    elapsed = time.monotonic() - start
    stop.set()
    results += [out.get(timeout=60) for _ in range(readers)]
    for p in procs:
        p.join(timeout=30)
    rows = sum(r[2] for r in results if r[0] == "rows")
    return {"setup": setup, "results": results, "run_ids": run_ids,
            "rows_per_s": rows / elapsed}
