"""Explanation latency: each method against the compute it cannot avoid, measured side by side.

ResNet-18 (random weights: nothing is downloaded) on one 224x224 RGB image, on CPU, in one
process. Each pair is interleaved (baseline, method, baseline, method, ...) so machine drift hits
both; the ratio of the best times is reported (and of the medians). Every timed method is a
fresh explainer (nothing found on an earlier call, such as Grad-CAM's layer, is reused). Goals:

* Grad-CAM                 <= 1.5x one forward + backward from the target logit to the Grad-CAM
                           layer (what Grad-CAM needs; not down to the input)
* Integrated Gradients (n) <= 1.5x one batched forward + backward pass of n inputs
* LIME (N samples)         <= 1.3x N batched forward passes plus the superpixel segmentation
* SHAP (nsamples)          computes the target class only: vs one batched forward + backward of
                           nsamples inputs through a one-output model (the background's forward
                           pass included in the method's time)

Then the end-to-end row a user waits for, per method at its default parameters: the method, the
same method on a randomised copy of the model (the sanity check) and the deletion curve, once
(``--no-end-to-end`` skips it).

Prints one JSON object.

    python benchmarks/explain_latency.py [--steps 16 --lime-samples 64 --shap-samples 16]

``--warm-path`` measures instead what the Explain page's click costs end to end (the whole
explanation with its sanity check and deletion curve, stored), on real runs trained here: digits
(small CNN) and ResNet-18 at 224 px (one epoch on a small folder of generated shapes). *Cold*: a
fresh interpreter that has what the dashboard has imported (not torch), from the click: import
torch, load the run, explain. *Warm*: the model already loaded and used (``st.cache_resource``),
a new image; the median of ``--warm-rounds`` images per light method. Side by side in the same
run: one background job's process alone (``python -m core explain``, without the queue and the
page's polling, so a lower bound of the job path), and the CLI finding a cached result.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.data.info import DatasetInfo  # noqa: E402
from core.data.shapes import generate_shapes  # noqa: E402
from core.data.transforms import make_preprocess  # noqa: E402
from core.explain import create_explainer  # noqa: E402
from core.explain.base import gradcam_layer, target_output  # noqa: E402
from core.explain.segmentation import segment  # noqa: E402
from core.explain.trust import deletion_curve, sanity_check, signed_map  # noqa: E402
from core.models import create_model  # noqa: E402

SIZE = 224
TARGET = 3


def fake_run(classes: int = 10) -> SimpleNamespace:
    """What the explainers need of a ``LoadedRun``: the model, its dataset's description and
    preprocessing (ImageNet statistics)."""
    info = DatasetInfo(name="benchmark", modality="image", classes=[str(i) for i in range(classes)],
                       split_counts={}, channels=3, image_size=SIZE,
                       mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    torch.manual_seed(0)
    model = create_model("resnet18", info, image_size=SIZE).eval()
    return SimpleNamespace(model=model, info=info, preprocess=make_preprocess(info, SIZE),
                           image_size=SIZE, ws=None, run_id="benchmark", classes=info.classes)


def forward_backward(model, x: torch.Tensor, n: int, column: int = TARGET) -> None:
    """One batched forward + backward (to the input) of ``n`` copies of ``x``, one output."""
    xs = x.unsqueeze(0).repeat(n, 1, 1, 1).requires_grad_(True)
    torch.autograd.grad(model(xs)[:, column].sum(), xs)


def forward_backward_to_layer(model, x: torch.Tensor, layer_name: str,
                              column: int = TARGET) -> None:
    """One forward, then the gradient of the target logit with respect to ``layer_name``'s
    output only: autograd stops there (Grad-CAM's unavoidable work)."""
    layer = dict(model.named_modules())[layer_name]
    kept = []
    handle = layer.register_forward_hook(lambda _m, _i, out: kept.append(out))
    try:
        logits = model(x.unsqueeze(0))
    finally:
        handle.remove()
    torch.autograd.grad(logits[:, column].sum(), kept[0])


def forwards(run, image: np.ndarray, n: int, batch: int) -> None:
    """``n`` forward passes in batches of ``batch`` (what LIME must predict)."""
    with torch.no_grad():
        for start in range(0, n, batch):
            k = min(batch, n - start)
            pixels = torch.from_numpy(np.repeat(image[None], k, axis=0))
            run.model(run.preprocess.pixels(pixels))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(method, baseline, rounds: int) -> dict:
    """Best-of-``rounds`` times (and medians): on a shared machine the minimum is the estimate
    least disturbed by other processes; the ratio is of the minimums."""
    method(), baseline()  # warm-up: lazy imports, allocator, thread pool
    times = {"method": [], "baseline": []}
    for _ in range(rounds):
        times["baseline"].append(timed(baseline))
        times["method"].append(timed(method))
    m, b = min(times["method"]), min(times["baseline"])
    return {"method_s": round(m, 4), "baseline_s": round(b, 4), "ratio": round(m / b, 3),
            "median_ratio": round(statistics.median(times["method"])
                                  / statistics.median(times["baseline"]), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=16, help="IG steps n")
    parser.add_argument("--lime-samples", type=int, default=64, help="LIME samples N")
    parser.add_argument("--lime-batch", type=int, default=32)
    parser.add_argument("--shap-samples", type=int, default=16)
    parser.add_argument("--shap-background", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--no-end-to-end", action="store_true",
                        help="skip the method + sanity check + deletion curve rows")
    parser.add_argument("--warm-path", action="store_true",
                        help="time the Explain page's click instead (cold vs warm, real runs)")
    parser.add_argument("--warm-rounds", type=int, default=3,
                        help="new images timed per method on the warm path")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.warm_path:
        from explain_warm import warm_path_report

        print(json.dumps(warm_path_report(args.warm_rounds), indent=2))
        return
    run = fake_run()
    images, _, _ = generate_shapes(n=1, size=SIZE, seed=0)
    image = images[0]
    x = run.preprocess(image)
    results = {}

    def fresh(method: str, **params):
        explainer = create_explainer(method, run, **params)
        if method == "shap":  # no training split here: the background is drawn from the image
            explainer._bg = background
        return explainer

    background = torch.stack([run.preprocess(np.roll(image, 37 * k, axis=1))
                              for k in range(args.shap_background)])
    layer = gradcam_layer(run.model, x.unsqueeze(0))
    results["gradcam"] = {
        **compare(lambda: fresh("gradcam").explain(x, TARGET),
                  lambda: forward_backward_to_layer(run.model, x, layer), args.rounds),
        "baseline": f"1 forward + backward from the target logit to {layer}", "goal": 1.5,
        "layer": layer}

    n = args.steps
    results["integrated_gradients"] = {
        **compare(lambda: fresh("ig", n_steps=n, internal_batch_size=n).explain(x, TARGET),
                  lambda: forward_backward(run.model, x, n), args.rounds), "n_steps": n,
        "baseline": f"1 batched forward + backward of {n} inputs", "goal": 1.5}

    big_n, batch = args.lime_samples, args.lime_batch
    lime_params = create_explainer("lime", run).params

    def lime_floor() -> None:
        segment(image, lime_params["n_segments"], lime_params["compactness"])
        forwards(run, image, big_n, batch)

    lime = fresh("lime", num_samples=big_n, batch_size=batch)
    _quiet(lime.explain, x, TARGET)
    results["lime"] = {
        **compare(lambda: _quiet(fresh("lime", num_samples=big_n, batch_size=batch).explain,
                                 x, TARGET), lime_floor, args.rounds),
        "num_samples": big_n, "batch_size": batch, "segmentation": lime.extras["segmentation"],
        "segments": lime.extras["segments"],
        "baseline": f"segmentation + {big_n} forwards in batches of {batch}", "goal": 1.3}

    ns = args.shap_samples
    one_output = target_output(run.model, TARGET)
    shap = fresh("shap", nsamples=ns, batch_size=ns)
    calls = count_calls(run.model, lambda: shap.explain(x, TARGET))
    results["shap"] = {
        **compare(lambda: fresh("shap", nsamples=ns, batch_size=ns).explain(x, TARGET),
                  lambda: forward_backward(one_output, x, ns, 0), args.rounds),
        "nsamples": ns, "background": args.shap_background,
        "outputs_explained": shap.extras.get("outputs_explained"),
        "classes": len(run.classes), "model_calls": calls,
        "baseline": f"1 batched forward + backward of {ns} inputs, target output only"}

    end_to_end = {} if args.no_end_to_end else {
        method: whole_explanation(fresh(method), run, x) for method in
        ("gradcam", "ig", "shap", "lime")}

    print(json.dumps({
        "benchmark": "explain_latency", "model": "resnet18 (random weights)",
        "input": f"1x3x{SIZE}x{SIZE}", "device": "cpu", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "machine": platform.machine(),
        "rounds": args.rounds, "results": results, "end_to_end_default_params": end_to_end,
        "passed": {"gradcam": results["gradcam"]["ratio"] <= 1.5,
                   "integrated_gradients": results["integrated_gradients"]["ratio"] <= 1.5,
                   "lime": results["lime"]["ratio"] <= 1.3,
                   "shap_target_only": results["shap"]["outputs_explained"] == 1},
    }, indent=2))


def whole_explanation(explainer, run, x: torch.Tensor) -> dict:
    """What a user waits for (besides starting a process and loading the run): the method at
    its default parameters, its randomised-model copy and the deletion curve; timed once."""
    start = time.perf_counter()
    attributions = _quiet(explainer.explain, x, TARGET)
    method_s = time.perf_counter() - start
    check, _ = _quiet(sanity_check, explainer, x, TARGET, attributions)
    sanity_s = time.perf_counter() - start - method_s
    deletion_curve(run.model, x, signed_map(attributions), TARGET)
    total = time.perf_counter() - start
    return {"params": {k: v for k, v in explainer.params.items() if k != "time_budget_s"},
            "method_s": round(method_s, 3), "sanity_copy_s": round(sanity_s, 3),
            "deletion_s": round(total - method_s - sanity_s, 3), "total_s": round(total, 3),
            "sanity": check.verdict}


def count_calls(model, fn) -> int:
    """Forward calls of ``model`` while ``fn`` runs (SHAP: the background's, then one per
    batch of samples for the one target output; all classes would multiply the second term)."""
    calls = [0]
    handle = model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        fn()
    finally:
        handle.remove()
    return calls[0]


def _quiet(fn, *args):
    """lime draws its own tqdm bar on stderr: keep stdout's JSON alone and stderr quiet."""
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):
        return fn(*args)


if __name__ == "__main__":
    main()
