"""What a user waits for in the browser, from the click until the result is on screen.

Used by ``benchmarks/ui_latency.py`` (which prints the JSON); each figure is measured in one run
beside its floor:

* ``first_load``: the app's first page load (Home drawn: the quick-start button, the counts and
  the sidebar's page links) against an empty Streamlit app (a title and a button) started the
  same way, in the same browser: the server's first visitor (it pays the script's imports) and a
  new visitor of a started server (a fresh browser context: no cache, a new session), timed
  once the machine is quiet after the first visits (the app's one-time background warm-up: the
  warm job parent and the torch preload): 7 new visitors of each (3 with ``--quick``), taking
  turns with the two servers up, their medians compared. Goal: the app within 1.2x of the
  empty app.
* ``click_floor_s``: a click on the empty app's button until its text is on screen: what any
  click costs in Streamlit on this machine, the floor of the figures below.
* ``evaluate_digits_test``: the sidebar link to Evaluate clicked until the metric cards show,
  cold (never evaluated, the model not loaded by the server; the server's one-time warm-up
  over) and stored. Goals 1.5 s / 0.3 s. ``right_after_start_s``: a cold one clicked as soon as
  a fresh server's first page is drawn (it also waits for the warm-up's torch import).
* ``predict_5_images``: Predict clicked with 5 uploaded digits until the fifth card's top-k
  bars are drawn; the model was loaded by the server before (warm). Goal 0.5 s. ``warm_s``: in a
  tab that showed Train before (its curves drawn, then the sidebar link to Predict);
  ``first_in_new_tab_s``: the page opened in a new tab.
* ``gradcam_digits``: Explain clicked until the Grad-CAM overlay is drawn, on a run whose model
  the server never loaded (cold), then on another image (warm). Goals 3 s / 1 s. It waits for
  whatever the page draws first (the warm path's map preview, or a job's finished card);
  ``with_checks_*`` wait on for the finished card with its trust checks (the randomised-model
  copy and the deletion curve). The server runs as a user's would (its own thread count).
* ``gradcam_resnet18_224`` (not with ``--quick``): the same on resnet18 at 224 px, trained (no
  weights downloaded) for one epoch on 32 generated shapes, as the compression tests do.

"Drawn" means the element exists, is not a stale element of the previous script run, and holds
what the click asked for (the new file's name, the chart's points counted from Plotly's own data,
the bars).
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from browser_launch import ROOT, digit_pngs, new_page, streamlit_app

GOALS = {"first_load_ratio": 1.2, "evaluate_cold_s": 1.5, "evaluate_stored_s": 0.3,
         "predict_5_warm_s": 0.5, "gradcam_warm_s": 1.0, "gradcam_cold_s": 3.0}
WAIT_MS = 240_000  # a cold job on a loaded 2-core machine
EMPTY_APP = '''import streamlit as st

st.title("Empty app")
if st.button("Go", key="floor_go"):
    st.write(f"done {st.session_state.setdefault('n', 0) + 1}")
    st.session_state["n"] += 1
'''

# True once an element matching ``sel`` holds, in element containers that are not stale (left
# over from the previous script run), ``text`` / a Plotly chart of at least ``points`` points /
# at least ``bars`` progress bars / a drawn image (an <img>, or an <image> in a Plotly chart:
# heat maps and go.Image draw those).
SHOWN_JS = """({sel, text, points, bars, image}) => {
  const count = (p) => p._fullData.reduce((n, t) => n + (t._length ?? (t.x ? t.x.length : 0)), 0);
  for (const el of document.querySelectorAll(sel)) {
    if (el.closest('[data-stale="true"]')) continue;
    const parts = [...el.querySelectorAll('[data-stale]')].filter(c => c.dataset.stale !== 'true');
    if (el.matches('[data-stale]')) parts.push(el);
    if (text && !parts.some(c => c.innerText.includes(text))) continue;
    const plots = parts.map(c => c.querySelector('.js-plotly-plot')).filter(p => p && p._fullData);
    if (points && !plots.some(p => count(p) >= points)) continue;
    const shown = new Set(parts.flatMap(c => [...c.querySelectorAll('[data-testid="stProgress"]')])
      .filter(b => !b.closest('[data-stale="true"]')));
    if (bars && shown.size < bars) continue;
    const img = parts.some(c => [...c.querySelectorAll('img')].some(
      i => i.complete && i.naturalWidth > 0));
    if (image && !img && !plots.some(p => p._fullData.length && p.querySelector('image'))) continue;
    return true;
  }
  return false;
}"""


def wait_shown(page, sel: str, text: str = "", points: int = 0, bars: int = 0,
               image: bool = False, timeout_ms: float = WAIT_MS) -> None:
    page.wait_for_function(SHOWN_JS, arg={"sel": sel, "text": text, "points": points,
                                          "bars": bars, "image": image},
                           timeout=timeout_ms, polling="raf")


def timed(action: Callable[[], None], until: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    until()
    return round(time.perf_counter() - start, 3)


def nav(page, path: str) -> None:
    page.locator(f'[data-testid="stSidebarNav"] a[href$="/{path}"]').click()


# -- first load ---------------------------------------------------------------------------------


# Each check is one predicate polled on every animation frame, so the figure is when the page
# shows it, not how often a locator asks (the app and the empty app are checked the same way).
HOME_READY_JS = """() => {
  const counts = document.querySelector('.st-key-home_counts');
  const metric = !!counts && counts.innerText.includes('datasets');
  return metric && !!document.querySelector('.st-key-home_quick_start button')
    && !!document.querySelector('[data-testid="stSidebarNav"] a[href$="/deploy"]');
}"""
EMPTY_READY_JS = """() => !!document.querySelector('.st-key-floor_go button')
  && [...document.querySelectorAll('h1')].some(h => h.innerText.includes('Empty app'))"""


def home_ready(page) -> None:
    page.wait_for_function(HOME_READY_JS, timeout=WAIT_MS, polling="raf")


def empty_ready(page) -> None:
    page.wait_for_function(EMPTY_READY_JS, timeout=WAIT_MS, polling="raf")


def wait_until_quiet(limit_s: float = 60.0, busy_percent: float = 15.0) -> float:
    """Seconds until this machine's CPUs were idle for two half-second samples in a row: after a
    server's first visit, the app warms up in the background (a warm job parent starts, torch is
    imported), a one-time cost that new visitors of a started server no longer share."""
    import psutil

    start, quiet = time.perf_counter(), 0
    while quiet < 2 and time.perf_counter() - start < limit_s:
        quiet = quiet + 1 if psutil.cpu_percent(interval=0.5) < busy_percent else 0
    return round(time.perf_counter() - start, 2)


def visit_time(browser, url: str, ready: Callable) -> float:
    """A new visitor (a fresh browser context: no cache, a new session) until ``ready``."""
    with new_page(browser, timeout_ms=WAIT_MS) as page:
        return timed(lambda: page.goto(url), lambda: ready(page))


def first_load(browser, home: Path, tmp: Path, visitors: int) -> dict:
    """The server's first visitor of each app, then (once the machine is quiet again) ``visitors``
    new visitors of each, taking turns: the app, the empty app, the app, ... so that whatever
    drifts on the machine meanwhile weighs on both alike; the medians are compared."""
    folder = tmp / "empty_app"
    (folder / ".streamlit").mkdir(parents=True)
    shutil.copy(ROOT / ".streamlit" / "config.toml", folder / ".streamlit" / "config.toml")
    (folder / "empty_app.py").write_text(EMPTY_APP)
    with streamlit_app(home, script=folder / "empty_app.py") as empty_url, \
            streamlit_app(home, OMP_NUM_THREADS="1") as app_url:
        first = {"empty": visit_time(browser, empty_url, empty_ready),
                 "app": visit_time(browser, app_url, home_ready)}
        settled = wait_until_quiet()
        times: dict[str, list[float]] = {"empty": [], "app": []}
        for _ in range(visitors):
            times["app"].append(visit_time(browser, app_url, home_ready))
            times["empty"].append(visit_time(browser, empty_url, empty_ready))
        with new_page(browser, timeout_ms=WAIT_MS) as page:
            page.goto(empty_url)
            empty_ready(page)
            clicks = []
            for n in range(1, 4):
                clicks.append(timed(
                    lambda page=page: page.locator(".st-key-floor_go button").click(),
                    lambda page=page, n=n: wait_shown(page, '[data-testid="stMain"]',
                                                      text=f"done {n}")))
    app, empty = ({"server_first_visit_s": first[name], "settled_after_s": settled,
                   "new_visitor_s": round(statistics.median(times[name]), 3),
                   "new_visitors_s": times[name]} for name in ("app", "empty"))
    ratio = app["new_visitor_s"] / empty["new_visitor_s"]
    return {"first_load": {
        "app": app, "empty_app": empty, "new_visitor_ratio": round(ratio, 2),
        "server_first_visit_ratio": round(
            app["server_first_visit_s"] / empty["server_first_visit_s"], 2),
        "goal_ratio": GOALS["first_load_ratio"],
        "meets_goal": ratio <= GOALS["first_load_ratio"]},
        "click_floor_s": statistics.median(clicks)}


# -- the flows on one server --------------------------------------------------------------------


def evaluate_flow(page, url: str, run_id: str, early_run_id: str) -> dict:
    """Home -> Evaluate (cold: never evaluated, model not loaded) -> Home -> Evaluate (stored).

    ``right_after_start_s``: the same on ``early_run_id``, clicked as soon as the server's first
    page is drawn, while the app still warms up (it imports torch in the background); then
    ``cold_s`` once that is over, as for a user who looked at Home for a few seconds."""
    cards = lambda: wait_shown(page, '[data-testid="stMain"]', text="Balanced acc.")  # noqa: E731
    page.goto(f"{url}/?run={early_run_id}")
    home_ready(page)
    early = timed(lambda: nav(page, "evaluate"), cards)
    wait_until_quiet()
    page.goto(f"{url}/?run={run_id}")
    home_ready(page)
    cold = timed(lambda: nav(page, "evaluate"), cards)
    stored = []
    for _ in range(3):
        nav(page, "")  # Home's link ends with the app's root
        home_ready(page)
        stored.append(timed(lambda: nav(page, "evaluate"), cards))
    stored_s = round(statistics.median(stored), 3)
    return {"cold_s": cold, "stored_s": stored_s, "right_after_start_s": early,
            "goal_cold_s": GOALS["evaluate_cold_s"], "goal_stored_s": GOALS["evaluate_stored_s"],
            "meets_goal": cold <= GOALS["evaluate_cold_s"]
            and stored_s <= GOALS["evaluate_stored_s"]}


def predict_once(browser, url: str, run_id: str, images: list[Path], charted: bool) -> float:
    """One click on Predict; ``charted``: the tab drew a Plotly chart (Train's) before."""
    with new_page(browser, timeout_ms=WAIT_MS) as page:
        if charted:
            page.goto(f"{url}/train?run={run_id}")
            page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')]"
                                   ".some(p => p._fullData)", timeout=WAIT_MS)
            nav(page, "predict")
        else:
            page.goto(f"{url}/predict?run={run_id}")
        page.locator(".st-key-predict_upload input[type=file]").set_input_files(
            [str(p) for p in images])
        page.wait_for_function(
            "() => { const b = document.querySelector('.st-key-predict_run button');"
            " return b && !b.disabled; }", timeout=WAIT_MS)
        last = len(images) - 1
        return timed(lambda: page.locator(".st-key-predict_run button").click(),
                     lambda: wait_shown(page, f".st-key-predict_card_{last}",
                                        text=images[-1].name, bars=5))


def predict_flow(browser, url: str, run_id: str, home: Path, rounds: int) -> dict:
    """5 uploads predicted in a fresh session each round, new files each time; the server has
    the model loaded (Evaluate loaded it), so every round is warm."""
    def images(r: int) -> list[Path]:  # new files each round: none of them predicted before
        return digit_pngs(home, home, range(5 * r, 5 * r + 5), f"p{r}_")

    first = predict_once(browser, url, run_id, images(0), charted=False)
    times = [predict_once(browser, url, run_id, images(r), charted=True)
             for r in range(1, 1 + rounds)]
    warm = round(statistics.median(times), 3)
    return {"warm_s": warm, "warm_rounds": times, "first_in_new_tab_s": first,
            "goal_warm_s": GOALS["predict_5_warm_s"],
            "meets_goal": warm <= GOALS["predict_5_warm_s"]}


GRADCAM = '[class*="st-key-explain_result_gradcam"]'  # the finished card, with its checks
# What the user first sees: the map drawn as soon as it exists (the warm path's preview), or the
# finished card where there is no preview (a job's result).
OVERLAY = f'[class*="st-key-explain_preview_gradcam"], {GRADCAM}'
GONE_JS = """(sel) => ![...document.querySelectorAll(sel)].some(
  e => !e.closest('[data-stale="true"]') && e.querySelector('[data-stale="false"]'))"""


def gradcam_flow(page, url: str, run_id: str, warm_rounds: int) -> dict:
    """Explain on a run the server never loaded (cold), then on new images (warm)."""
    page.goto(f"{url}/explain?run={run_id}")
    button = page.locator(".st-key-explain_run button")
    enabled = ("() => { const b = document.querySelector('.st-key-explain_run button');"
               " return b && !b.disabled; }")
    page.wait_for_function(enabled, timeout=WAIT_MS)
    def click() -> tuple[float, float]:
        """From the click: the overlay on screen, then the card with its trust checks."""
        start = time.perf_counter()
        button.click()
        wait_shown(page, OVERLAY, image=True)
        shown = time.perf_counter() - start
        wait_shown(page, GRADCAM, image=True)
        return round(shown, 3), round(time.perf_counter() - start, 3)
    cold, cold_full = click()
    warm, warm_full = [], []
    for index in range(1, 1 + warm_rounds):  # an image not explained before
        field = page.locator(".st-key-explain_index input")
        field.fill(str(index))
        field.press("Enter")
        page.wait_for_function(GONE_JS, arg=GRADCAM, timeout=WAIT_MS)  # the last image's
        page.wait_for_function(enabled, timeout=WAIT_MS)
        shown, full = click()
        warm.append(shown)
        warm_full.append(full)
    warm_s = round(statistics.median(warm), 3)
    return {"cold_s": cold, "warm_s": warm_s, "warm_rounds": warm,
            "with_checks_cold_s": cold_full,
            "with_checks_warm_s": round(statistics.median(warm_full), 3),
            "goal_cold_s": GOALS["gradcam_cold_s"], "goal_warm_s": GOALS["gradcam_warm_s"],
            "meets_goal": cold <= GOALS["gradcam_cold_s"] and warm_s <= GOALS["gradcam_warm_s"]}


def train_digits(home: Path, name: str) -> str:
    """A completed 1-epoch digits run (the small CNN), trained in this process."""
    from core.config import RunConfig
    from core.runs import create_run
    from core.train import execute_run
    from core.workspace import Workspace

    config = RunConfig()
    config.train.epochs = 1
    with Workspace.open(home) as ws:
        run = create_run(ws.store, config, name=name)
        summary = execute_run(ws, run.id)
    assert summary["status"] == "completed", summary
    return run.id


def train_resnet18(home: Path) -> str:
    """A completed resnet18 run at 224 px on 32 generated shapes (one epoch, random init)."""
    from compress_support import config, mini_shapes, train_now

    from core.workspace import Workspace

    with Workspace.open(home) as ws:
        mini_shapes(ws, home / "mini_src", n=32)
        run_id = train_now(ws, config("resnet18", image_size=224))
        assert ws.store.get_run(run_id).status == "completed", ws.store.get_run(run_id).error
    return run_id


def browser_flows(browser, tmp: Path, quick: bool) -> dict:
    """Every figure of the module docstring, in one browser, beside its floor."""
    home = tmp / "flows"
    home.mkdir(parents=True)
    evaluated, explained = train_digits(home, "evaluated"), train_digits(home, "explained")
    early = train_digits(home, "evaluated early")
    resnet = None if quick else train_resnet18(home)
    results: dict = {"load_avg_1m_before": round(os.getloadavg()[0], 2)}
    results.update(first_load(browser, home, tmp, visitors=3 if quick else 7))
    with streamlit_app(home, OMP_NUM_THREADS="1") as url:
        with new_page(browser, timeout_ms=WAIT_MS) as page:
            results["evaluate_digits_test"] = evaluate_flow(page, url, evaluated, early)
        results["predict_5_images"] = predict_flow(browser, url, evaluated, home,
                                                   rounds=2 if quick else 3)
        with new_page(browser, timeout_ms=WAIT_MS) as page:
            results["gradcam_digits"] = gradcam_flow(page, url, explained,
                                                     warm_rounds=1 if quick else 3)
        if resnet is not None:
            with new_page(browser, timeout_ms=WAIT_MS) as page:
                results["gradcam_resnet18_224"] = gradcam_flow(page, url, resnet, warm_rounds=2)
    results["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    return results
