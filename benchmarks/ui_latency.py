"""Dashboard latency: what a user waits for in the browser, live-update delay, render times.

Prints one JSON object:

* ``browser_flows``: in a real browser, from the click until the result is on screen, each beside
  its floor measured in the same run (``benchmarks/ui_flows.py`` says exactly what each waits for):
  the app's first page load against an empty Streamlit app's (goal <= 1.2x), a click on the empty
  app (the floor of any click), Evaluate of the digits test split cold and stored (goals 1.5 s /
  0.3 s), Predict of 5 images warm (goal 0.5 s), Grad-CAM on digits cold and warm (goals 3 s / 1 s).

* ``browser``: in a real browser, ``train_page_with_big_run_s`` (a full page load of Train for a
  run with ``--points`` points until its loss curve is drawn: the app's JavaScript, the session,
  the script and plotly's drawing; median of two warm loads; goal < 1 s), then the live-update
  delay: a metric row written to the store (as a job does) -> the loss chart's Plotly traces hold
  one more point (counted in the browser from the chart itself, not from a caption). Median and
  max over ``--updates`` rows. Goal: < 2 s.
* ``render_20k_points_s``: the Train page of a run with ``--points`` logged points, rendered by
  ``AppTest`` (a fresh session, which reads every row, and a rerun). Goal: < 1 s.
* ``render_1000_runs_s``: Home and Train with ``--runs`` runs in the store. Goal: < 1 s.

The AppTest figures are the server-side script time (what a rerun costs before the browser draws);
the browser figures are end to end and depend on the machine's load (reported as
``load_avg_1m_at_start``). The browser part is skipped (null) without Chromium.

    python benchmarks/ui_latency.py [--points 20000 --runs 1000 --updates 10] [--quick]

``--quick``: 2,000 points, 100 runs, 3 updates, fewer repeats of each browser flow.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # browser_launch: the app and Chromium, as tests use

from ui_flows import browser_flows  # noqa: E402

from core.config import RunConfig  # noqa: E402
from core.runs.store import Store  # noqa: E402

GOAL_LIVE_S, GOAL_RENDER_S = 2.0, 1.0


def fake_run(store: Store, points: int, status: str = "running", name: str = "") -> str:
    """A run as a job leaves it: step losses every 10 steps, epoch metrics every 1000 steps.

    Its pid is this process, so reconciliation takes it for a live job while it is running.
    """
    run = store.create_run(RunConfig().to_dict(), name=name)
    rows = [(10 * (i + 1), "train/step_loss", 2.0 / (1 + i / 500)) for i in range(points)]
    for epoch, step in enumerate(range(1000, 10 * points + 1, 1000), start=1):
        rows += [(step, "epoch", float(epoch)), (step, "train/loss", 1.0 / epoch),
                 (step, "val/loss", 1.1 / epoch), (step, "train/acc", 1 - 0.5 / epoch),
                 (step, "val/acc", 1 - 0.6 / epoch), (step, "lr", 1e-3),
                 (step, "throughput", 1000.0)]
    store.log_metrics(run.id, rows)
    store.set_status(run.id, "running")
    store.update_run(run.id, pid=os.getpid(), step=10 * points, total_steps=20 * points,
                     epoch=points // 100, total_epochs=points // 50, device="cpu",
                     heartbeat=time.time(), summary={"steps_per_s": 100.0})
    if status != "running":
        store.set_status(run.id, status)
    return run.id


def apptest_seconds(page: str, active_run: str | None, repeats: int = 5) -> dict[str, float]:
    """Script time of ``page``: a fresh session's first render, then the median of reruns."""
    from streamlit.testing.v1 import AppTest

    warm = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    warm.run()  # imports (pandas, plotly, the datasets) are paid once per server, not per page
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["active_run"] = active_run
    if page != "pages/home.py":
        at.run()  # AppTest can switch pages only after a first run
        at.switch_page(page)
    start = time.perf_counter()
    at.run()
    first = time.perf_counter() - start
    assert not at.exception, [e.value for e in at.exception]
    drawn = at.dataframe or [b for b in at.button if b.key.startswith("home_runs_open_")]
    assert drawn, "the runs were not drawn (Train's table, Home's newest runs)"
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - start)
    return {"first_s": round(first, 3), "rerun_s": round(statistics.median(times), 3)}


def browser_seconds(home: Path, updates: int, points: int) -> dict | None:
    """End to end in Chromium: the Train page of a ``points`` run, then the live-update delay."""
    from browser_launch import CHROMIUM, chromium, new_page, plotly_points, streamlit_app

    if CHROMIUM is None:
        return None
    home.mkdir(parents=True, exist_ok=True)
    store = Store(home)
    big = fake_run(store, points=points, status="completed")
    run_id = fake_run(store, points=200)
    delays = []
    try:
        with streamlit_app(home) as url, chromium() as browser, \
                new_page(browser, timeout_ms=60_000) as page:
            page.goto(url)  # the server's first page pays its imports (plotly, pandas) once
            page.locator(".st-key-home_quick_start").wait_for()
            loads = []
            for _ in range(3):  # the first also fetches plotly.js into the browser cache
                start = time.perf_counter()
                page.goto(f"{url}/train?run={big}")
                page.locator(".st-key-train_loss_chart .scatterlayer .trace").first.wait_for()
                loads.append(time.perf_counter() - start)
            page_load = statistics.median(loads[1:])
            page.goto(f"{url}/train?run={run_id}")
            page.locator(".st-key-train_loss_chart .scatterlayer .trace").first.wait_for()
            step = 10 * 200
            for _ in range(updates + 1):
                before = plotly_points(page, "train_loss_chart")
                time.sleep(0.37)  # land anywhere in the refresh cycle
                step += 10
                store.log_metrics(run_id, [(step, "train/step_loss", 0.1)])
                written = time.perf_counter()
                while plotly_points(page, "train_loss_chart") <= before:
                    if time.perf_counter() - written > 10:
                        raise AssertionError("a new metric row never reached the chart")
                    time.sleep(0.02)
                delays.append(time.perf_counter() - written)
    finally:
        store.set_status(run_id, "completed")
    # The first row after the page load is reported apart: it also waits for the page to settle.
    first, steady = delays[0], delays[1:]
    return {"train_page_with_big_run_s": round(page_load, 3),
            "train_page_with_big_run_first_s": round(loads[0], 3),
            "live_update_median_s": round(statistics.median(steady), 3),
            "live_update_max_s": round(max(steady), 3),
            "live_update_first_after_load_s": round(first, 3), "live_updates": len(steady),
            "live_goal_s": GOAL_LIVE_S, "live_meets_goal": max(steady) < GOAL_LIVE_S,
            "page_goal_s": GOAL_RENDER_S, "page_meets_goal": page_load < GOAL_RENDER_S}


def flows(tmp: Path, quick: bool) -> dict | None:
    """``ui_flows.browser_flows`` in one Chromium (null without Chromium)."""
    from browser_launch import CHROMIUM, chromium

    if CHROMIUM is None:
        return None
    with chromium() as browser:
        return browser_flows(browser, tmp, quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--quick", action="store_true", help="small settings, fewer repeats")
    args = parser.parse_args()
    if args.quick:
        args.points, args.runs, args.updates = 2_000, 100, 3
    results: dict = {"benchmark": "ui_latency", "cpus": os.cpu_count(),
                     "load_avg_1m_at_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "big_run"
        os.environ["LAB2MARKET_HOME"] = str(home)
        big = fake_run(Store(home), points=args.points, status="completed")
        results["render_20k_points_s"] = {
            "points": args.points, **apptest_seconds("pages/train.py", big)}

        home = Path(tmp) / "many_runs"
        os.environ["LAB2MARKET_HOME"] = str(home)
        store = Store(home)
        ids = [fake_run(store, points=20, status="completed") for _ in range(args.runs)]
        results["render_1000_runs_s"] = {
            "runs": args.runs,
            "home": apptest_seconds("pages/home.py", ids[-1]),
            "train": apptest_seconds("pages/train.py", ids[-1]),
        }
        if not args.no_browser:
            results["browser_flows"] = flows(Path(tmp) / "flows", args.quick)
            results["browser"] = browser_seconds(Path(tmp) / "live", args.updates, args.points)
    renders = [results["render_20k_points_s"], *results["render_1000_runs_s"].values()]
    worst = max(r["first_s"] for r in renders if isinstance(r, dict))
    results["render_goal_s"] = GOAL_RENDER_S
    results["render_meets_goal"] = worst < GOAL_RENDER_S
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
