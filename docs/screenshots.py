"""Screenshots of the real app for the README: ``python docs/screenshots.py``.

Starts ``streamlit run app.py`` over a fresh workspace (a temporary folder unless ``--home``),
drives it in the system Chromium as a user would (train digits from the Train page, evaluate,
predict five test images, explain one with all four methods, export to ONNX) and saves one PNG
per page as ``docs/<name>.png``. Re-run it whenever a page changes; ``--only explain,deploy``
retakes some (a run is trained first when no shot before them made one).

Adding a shot (e.g. your page's) takes a few lines: a function that takes the ``Session``,
drives the page with Playwright and calls ``session.save("name")``, registered with ``@shot``::

    @shot("tune")
    def tune(session: Session) -> None:
        page = session.open(f"/tune?run={session.run_id()}")
        page.locator(".st-key-tune_chart .js-plotly-plot").wait_for()
        session.save("tune")

Shots run in the order they are registered; ``session.run_id()`` is the digits run the Train
shot launched (trained in-process when the Train shot is skipped), ``session.home`` the
workspace, ``session.page`` the Playwright page. Needs Chromium (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # browser_launch: the app and Chromium, as tests use

from browser_launch import chromium, digit_pngs, new_page, plotly_points, streamlit_app  # noqa: E402

DOCS = ROOT / "docs"
VIEWPORT = {"width": 1280, "height": 900}
TRAIN_EPOCHS = 12
WAIT_MS = 240_000  # a background job on a loaded 2-core machine can take minutes
MAX_HEIGHT = 5000  # px: a full-page shot taller than this is cut
PAGE_HEIGHT_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const block = document.querySelector('[data-testid="stMainBlockContainer"]');
  return Math.max(main ? main.scrollHeight : 0, block ? block.scrollHeight + 120 : 0,
                  document.body.scrollHeight);
}"""


@dataclass
class Session:
    """What a shot works with: the browser page, the app's URL, the workspace, the run."""

    page: object
    url: str
    home: Path
    out: Path
    saved: list[Path] = field(default_factory=list)
    _run_id: str | None = None

    def open(self, path: str):
        """Go to ``path`` of the app (e.g. ``/explain?run=ID``) and wait for it to draw."""
        self.page.goto(f"{self.url}{path}")
        self.page.locator('[data-testid="stSidebarNav"]').wait_for()
        return self.page

    def run_id(self) -> str:
        """The digits run of these shots: the one the Train shot launched, else the newest
        completed run of the workspace (``--home``), else one trained in-process."""
        if self._run_id is None:
            self._run_id = newest_run(self.home) or train_in_process(self.home)
        return self._run_id

    def save(self, name: str, full_page: bool = True) -> Path:
        """``docs/<name>.png`` of the page as it is now (animations finished): the whole page,
        or with ``full_page=False`` the window as it is scrolled."""
        self.page.wait_for_timeout(800)  # plotly's transitions, the last fragment redraw
        path = self.out / f"{name}.png"
        size = self.page.viewport_size
        if full_page:
            # Streamlit scrolls inside its main element, so Playwright's full_page sees one
            # window: the window is made as tall as the page instead, for the shot.
            height = int(self.page.evaluate(PAGE_HEIGHT_JS))
            self.page.set_viewport_size({"width": size["width"],
                                         "height": min(max(height, size["height"]), MAX_HEIGHT)})
            self.page.wait_for_timeout(800)
        try:
            self.page.screenshot(path=str(path), animations="disabled")
        finally:
            self.page.set_viewport_size(size)
        self.saved.append(path)
        return path


Take = Callable[[Session], None]
SHOTS: list[tuple[str, Take]] = []


def shot(name: str) -> Callable[[Take], Take]:
    """Register a shot under ``name`` (``--only`` selects by these names)."""
    def register(take: Take) -> Take:
        SHOTS.append((name, take))
        return take
    return register


# -- the shots -----------------------------------------------------------------------------------


@shot("train")
def train(session: Session) -> None:
    """Launch a digits run from the Train page; the shot is taken while its curves grow."""
    page = session.open("/train")
    page.locator(".st-key-train_epochs input").fill(str(TRAIN_EPOCHS))
    page.locator(".st-key-train_batch_size input").fill("16")
    page.get_by_role("button", name="Launch").click()
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:  # live: a few epochs in, before it ends
        status = page.locator(".st-key-train_run_status")
        text = status.first.inner_text() if status.count() else ""
        if "running" in text.lower() and plotly_points(page, "train_loss_chart") >= 25:
            break
        if "completed" in text.lower():
            break
        page.wait_for_timeout(250)
    # The window on the live monitor: status, progress and the curves as they grow.
    page.locator(".st-key-train_run_status").first.scroll_into_view_if_needed()
    page.locator('[data-testid="stMain"]').evaluate(
        "(main) => { main.scrollTop += document.querySelector('.st-key-train_run_status')"
        ".getBoundingClientRect().top - 80; }")
    session.save("train", full_page=False)
    page.locator(".st-key-train_run_status", has_text="completed").wait_for(timeout=WAIT_MS)
    session._run_id = newest_run(session.home)


@shot("evaluate")
def evaluate(session: Session) -> None:
    page = session.open(f"/evaluate?run={session.run_id()}")
    page.locator('[data-testid="stMetric"]').first.wait_for(timeout=WAIT_MS)
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=WAIT_MS)
    session.save("evaluate")


@shot("predict")
def predict(session: Session) -> None:
    files = digit_pngs(session.home, session.home / "uploads", range(5))
    page = session.open(f"/predict?run={session.run_id()}")
    page.locator(".st-key-predict_upload input[type=file]").set_input_files(
        [str(f) for f in files])
    page.wait_for_function(
        "() => !document.querySelector('.st-key-predict_run button').disabled")
    page.locator(".st-key-predict_run button").click()
    page.locator('.st-key-predict_card_4 [data-testid="stProgress"]').first.wait_for(
        timeout=WAIT_MS)
    session.save("predict")


@shot("explain")
def explain(session: Session) -> None:
    """One test image explained by Grad-CAM, Integrated Gradients, SHAP and LIME."""
    page = session.open(f"/explain?run={session.run_id()}")
    methods = page.locator(".st-key-explain_methods input")
    for name in ("Integrated Gradients", "SHAP", "LIME"):
        methods.click()
        page.get_by_role("option", name=name, exact=True).click()
    page.keyboard.press("Escape")
    page.locator(".st-key-explain_run button").click()
    for method in ("gradcam", "ig", "shap", "lime"):
        page.locator(f".st-key-explain_result_{method} .js-plotly-plot .heatmaplayer").wait_for(
            timeout=WAIT_MS)
    session.save("explain")


@shot("deploy")
def deploy(session: Session) -> None:
    page = session.open(f"/deploy?run={session.run_id()}")
    page.locator(".st-key-deploy_export button").click()
    page.locator(".st-key-deploy_download button").wait_for(timeout=WAIT_MS)
    session.save("deploy")


@shot("tune")
def tune(session: Session) -> None:
    """A finished 8-trial study with the page's defaults (digits, its first model, the small
    CNN) at 8 epochs a trial: the trials table, with the pruned ones, and Optuna's intermediate
    values, where the pruner's cuts show."""
    page = session.open("/tune")
    page.locator(".st-key-tune_epochs input").fill("8")
    page.locator(".st-key-tune_trials input").fill("8")
    page.get_by_role("button", name="Launch study").click()
    page.locator(".st-key-tune_status", has_text="completed").wait_for(timeout=WAIT_MS * 2)
    page.locator(".st-key-tune_plot").get_by_text("Intermediate values (pruning)").click()
    page.locator(".st-key-tune_chart", has_text="Intermediate values").wait_for(timeout=WAIT_MS)
    session.save("tune")


@shot("health")
def health(session: Session) -> None:
    """The Data page's Health tab on a small image dataset with planted problems (copies across
    splits, near-duplicates, a truncated file, a 10:1 imbalance), checked as a background job."""
    from core.data import import_dataset
    from core.workspace import Workspace

    with Workspace.open(session.home) as ws:
        import_dataset(ws, "photos", planted_folder(session.home / "planted"))
    deadline = time.monotonic() + 90  # the page's dataset list is cached for up to 60 s
    while True:
        page = session.open("/data")
        page.locator(".st-key-data_dataset").click()
        option = page.get_by_role("option", name="photos", exact=True)
        if option.count() or time.monotonic() > deadline:
            break
        page.wait_for_timeout(5000)
    option.click()
    page.get_by_role("tab", name="Health").click()
    page.locator(".st-key-data_health_check button").click()
    page.locator(".st-key-data_health_again button").wait_for(timeout=WAIT_MS)
    session.save("health")


@shot("lr_finder")
def lr_finder(session: Session) -> None:
    """The LR range test of the form's config: loss against LR, the suggested rate marked."""
    page = session.open("/train")
    page.get_by_role("button", name="Find a learning rate").click()
    page.locator(".st-key-train_lr_find_chart .js-plotly-plot").wait_for(timeout=WAIT_MS)
    page.mouse.move(0, 0)  # no tooltip of the button over the shot
    session.save("lr_finder")


@shot("compress")
def compress(session: Session) -> None:
    """The digits run pruned by half its channels (one fine-tune epoch), then the variants
    measured side by side: the table and the Pareto chart."""
    page = session.open(f"/compress?run={session.run_id()}")
    page.locator(".st-key-compress_epochs input").fill("1")
    page.get_by_role("button", name="Prune").click()
    page.get_by_text("completed: measure the variants").wait_for(timeout=WAIT_MS)
    page.locator(".st-key-compress_measure button").first.click()
    page.locator(".st-key-compress_chart .js-plotly-plot").wait_for(timeout=WAIT_MS)
    page.locator(".st-key-compress_table").scroll_into_view_if_needed()
    session.save("compress")


@shot("ensemble")
def ensemble(session: Session) -> None:
    """The diversity view of a stacking ensemble of three digits runs (the session's run and
    two weaker ones, 2 epochs, seeds 1 and 2, so they disagree)."""
    from core.config import RunConfig
    from core.runs import create_run
    from core.train import execute_run
    from core.workspace import Workspace

    run_id = session.run_id()
    with Workspace.open(session.home) as ws:
        for seed in (1, 2):
            raw = RunConfig().to_dict()
            raw["train"].update(epochs=2, batch_size=16, seed=seed)
            execute_run(ws, create_run(ws.store, RunConfig.from_dict(raw)).id)
    page = session.open(f"/ensemble?run={run_id}")  # the three digits runs are preselected
    page.locator(".st-key-ensemble_method").get_by_text("stacking", exact=True).click()
    page.locator(".st-key-ensemble_build button").click()
    page.locator(".st-key-ensemble_accuracy .js-plotly-plot").wait_for(timeout=WAIT_MS)
    page.locator(".st-key-ensemble_disagreement .js-plotly-plot").wait_for(timeout=WAIT_MS)
    session.save("ensemble")


@shot("cv")
def cross_validation(session: Session) -> None:
    """A 3-fold cross-validation of an MLP on wine from the Train page: the folds, their
    curves overlaid, and the summary with the scikit-learn baselines."""
    page = session.open("/train")
    page.locator(".st-key-train_cv_k input").wait_for()  # the whole form is drawn
    page.locator(".st-key-train_dataset input").click()
    page.get_by_role("option", name="wine", exact=True).click()
    page.get_by_text("tabular data, 3 classes").wait_for()  # the form's defaults for wine
    page.locator(".st-key-train_epochs input").fill("5")
    page.locator(".st-key-train_cv_k input").fill("3")
    page.locator(".st-key-train_cv").get_by_text("Cross-validation").click()
    page.get_by_role("button", name="Launch").click()
    # The summary ends with the final-model button (it is drawn once every fold has ended).
    page.get_by_role("button", name="Train the final model").wait_for(timeout=WAIT_MS * 2)
    session.save("cv")


# -- helpers -------------------------------------------------------------------------------------


def planted_folder(root: Path) -> Path:
    """An ImageFolder with train/val/test and planted problems (see ``tests/test_health.py``)."""
    import shutil

    import numpy as np
    from PIL import Image
    from test_health import jpeg, scene

    rng = np.random.default_rng(7)
    for split, counts in {"train": (60, 6), "val": (10, 3), "test": (10, 3)}.items():
        for cls, n in zip(("cat", "dog"), counts, strict=True):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                scene(rng).save(root / split / cls / f"{i:03d}.png")
    cats = root / "train" / "cat"
    for i in (1, 2):
        shutil.copyfile(cats / f"{i:03d}.png", root / "test" / "cat" / f"copy-{i}.png")
    Image.open(cats / "003.png").resize((48, 48)).save(root / "val" / "cat" / "small-3.png")
    (cats / "004-q40.jpg").write_bytes(jpeg(Image.open(cats / "004.png"), 40))
    (cats / "broken.jpg").write_bytes(jpeg(scene(rng), 90)[:300])
    return root


def newest_run(home: Path) -> str | None:
    """The newest completed digits run in the workspace, if any."""
    from core.runs.store import Store

    with Store(home) as store:
        done = [r for r in store.list_runs(status="completed") if r.dataset == "digits"]
    return done[0].id if done else None


def train_in_process(home: Path) -> str:
    from core.config import RunConfig
    from core.runs import create_run
    from core.train import execute_run
    from core.workspace import Workspace

    with Workspace.open(home) as ws:
        raw = RunConfig().to_dict()
        raw["train"].update(epochs=TRAIN_EPOCHS, batch_size=16)
        run = create_run(ws.store, RunConfig.from_dict(raw))
        execute_run(ws, run.id)
        return run.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated shot names (default: all): "
                                       + ", ".join(name for name, _ in SHOTS))
    parser.add_argument("--home", help="workspace (default: a fresh temporary folder)")
    parser.add_argument("--out", default=str(DOCS), help="where the PNGs go (docs/)")
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else [name for name, _ in SHOTS]
    unknown = set(chosen) - {name for name, _ in SHOTS}
    if unknown:
        parser.error(f"unknown shot(s): {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="l2m-shots-") as tmp:
        home = Path(args.home or tmp)
        home.mkdir(parents=True, exist_ok=True)
        # One torch thread per job: on a small machine jobs otherwise fight the browser.
        with streamlit_app(home, OMP_NUM_THREADS="1") as url, chromium() as browser, \
                new_page(browser, timeout_ms=60_000, viewport=VIEWPORT) as page:
            session = Session(page, url, home, Path(args.out))
            for name, take in SHOTS:
                if name in chosen:
                    take(session)
                    print(f"saved {session.saved[-1]}", file=sys.stderr)
        stop_jobs(home)


def stop_jobs(home: Path) -> None:
    """Jobs outlive the app by design; the shots leave none running."""
    from core import runs
    from core.runs.store import Store

    with Store(home) as store:
        for run in store.active_runs():
            runs.cancel(store, run.id, timeout=10)


if __name__ == "__main__":
    main()
