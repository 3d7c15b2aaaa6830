"""Serving a burst: 200 concurrent requests on digits against the real server (`python -m core
serve`, a separate process on 127.0.0.1), at the default limits.

A digits run is trained (1 epoch) and exported to ONNX fp32 in a temporary workspace. Each
configuration gets a fresh server; one burst of ``--requests`` concurrent POSTs (each on its own
connection, all in flight at once) is sent and every answer counted. Reported per
configuration: answered / shed (429) / other errors, p50 / p99 latency as the client saw it,
throughput (answers per second of the burst's wall time) and the server's batch counts.

Floors measured in the same run:

* ``single_request_ms``: p50 of sequential requests to the default server (one at a time: HTTP,
  decoding, one inference): the latency of a request that never waits;
* ``compute_s``: onnxruntime on the burst's preprocessed inputs, in-process, in batches of the
  default ``--max-batch``: the inference work the burst cannot avoid.

Configurations: the defaults (queue + micro-batching); batching off (``--max-batch 1``); and no
wait (``--max-batch 1 --queue-timeout 0.001``), close to the server before the queue existed
(429 as soon as every slot is busy). Prints one JSON object.

    python benchmarks/serve_burst.py [--requests 200 --sequential 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from core.deploy.runtime.settings import Settings  # noqa: E402

CONFIGS = {
    "default": [],
    "batching_off": ["--max-batch", "1"],
    "no_wait": ["--max-batch", "1", "--queue-timeout", "0.001"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(home: Path, run_id: str, flags: list[str]):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "core", "serve", run_id, "--home", str(home),
                             "--port", str(port), *flags], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None:
                raise SystemExit(f"the server exited {proc.returncode}")
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


async def timed_post(client: httpx.AsyncClient, url: str, body: bytes):
    start = time.perf_counter()
    try:
        r = await client.post(f"{url}/predict", files={"file": ("x.png", body, "image/png")})
        return r.status_code, time.perf_counter() - start
    except httpx.HTTPError as exc:
        return type(exc).__name__, time.perf_counter() - start


def burst(url: str, bodies: list[bytes]) -> dict:
    async def send():
        limits = httpx.Limits(max_connections=len(bodies))
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            start = time.perf_counter()
            out = await asyncio.gather(*[timed_post(client, url, b) for b in bodies])
            return out, time.perf_counter() - start

    before = httpx.get(f"{url}/health").json()["batching"]
    results, wall = asyncio.run(send())
    after = httpx.get(f"{url}/health").json()["batching"]
    statuses = Counter(status for status, _ in results)
    ok = [s for status, s in results if status == 200]
    batches = after["batches"] - before["batches"]
    return {
        "requests": len(bodies), "answered": statuses.get(200, 0),
        "shed_429": statuses.get(429, 0),
        "errors": sum(n for status, n in statuses.items() if status not in (200, 429)),
        "p50_ms": round(1000 * statistics.median(ok), 1) if ok else None,
        "p99_ms": round(1000 * float(np.percentile(ok, 99)), 1) if ok else None,
        "wall_s": round(wall, 3), "answers_per_s": round(len(ok) / wall, 1),
        "onnxruntime_batches": batches,
        "mean_batch": round((after["batched"] - before["batched"]) / batches, 2)
        if batches else None,
        "largest_batch": after["largest"],
    }


def sequential_ms(url: str, bodies: list[bytes]) -> float:
    times = []
    with httpx.Client(timeout=30) as client:
        for body in bodies:
            start = time.perf_counter()
            client.post(f"{url}/predict", files={"file": ("x.png", body, "image/png")})
            times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times[1:]), 2)


def compute_floor(bundle: str, bodies: list[bytes], batch: int) -> float:
    """onnxruntime on the preprocessed inputs, in-process, in batches: best of 3."""
    from core.deploy.runtime.images import open_image
    from core.deploy.runtime.model import BundleModel
    from core.deploy.runtime.preprocess import image_array

    model = BundleModel(bundle)
    xs = np.stack([image_array(open_image(b), model.spec) for b in bodies])
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for i in range(0, len(xs), batch):
            model.predict(xs[i:i + batch])
        best = min(best, time.perf_counter() - start)
    return round(best, 4)


def prepare(home: Path, n: int) -> tuple[str, str, list[bytes]]:
    from core.config import RunConfig
    from core.data import load_dataset
    from core.deploy.export import export_run
    from core.runs import create_run
    from core.train import execute_run
    from core.workspace import Workspace

    with Workspace.open(home) as ws:
        raw = RunConfig().to_dict()
        raw["train"].update(epochs=1)
        run = create_run(ws.store, RunConfig.from_dict(raw))
        assert execute_run(ws, run.id)["status"] == "completed"
        manifest = export_run(ws, run.id, "onnx", latency_budget_s=0.2)
        dataset = load_dataset(ws, "digits")
        bodies = []
        for i in range(n):
            buf = io.BytesIO()
            dataset.raw("test", i % 100).save(buf, "PNG")
            bodies.append(buf.getvalue())
    return run.id, manifest["path"], bodies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--sequential", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="l2m-burst-") as tmp:
        home = Path(tmp)
        run_id, bundle, bodies = prepare(home, args.requests)
        results, floor = {}, {}
        for name, flags in CONFIGS.items():
            with server(home, run_id, flags) as url:
                if name == "default":
                    floor["single_request_ms"] = sequential_ms(url, bodies[:args.sequential])
                results[name] = {"flags": " ".join(flags) or "(defaults)", **burst(url, bodies)}
        floor["compute_s"] = compute_floor(bundle, bodies, Settings.max_batch)
    default = results["default"]
    print(json.dumps({
        "benchmark": "serve_burst", "dataset": "digits (8x8 PNG)", "model": "smallcnn, ONNX fp32",
        "cpus": os.cpu_count(),
        "defaults": {"max_concurrency": Settings.max_concurrency,
                     "max_queue": Settings.max_queue, "queue_timeout_s": Settings.queue_timeout_s,
                     "max_batch": Settings.max_batch,
                     "batch_window_ms": Settings.batch_window_ms},
        "floor": floor, "results": results,
        "p50_over_single_request": round(default["p50_ms"] / floor["single_request_ms"], 2)
        if default["p50_ms"] else None,
        "goal": "default: 0 errors and 0 sheds",
        "meets_goal": default["errors"] == 0 and default["shed_429"] == 0,
    }, indent=2))


if __name__ == "__main__":
    main()
