"""``python -m core predict RUN FILE...`` and ``python -m core explain RUN FILE --method M``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core.cli.base import Result, add_command, command, progress
from core.errors import InvalidConfig


def add_parsers(sub) -> None:
    p = add_command(sub, "predict", "predict image or CSV files with a run")
    p.add_argument("run")
    p.add_argument("files", nargs="+", metavar="FILE", help="images (png, jpg, webp, bmp, ...) "
                                                            "or, for a tabular run, CSV files")
    p.add_argument("--top-k", type=int, default=5, help="classes shown per input (5)")
    p.add_argument("--batch-size", type=int, default=64)

    e = add_command(sub, "explain", "explain a prediction (Grad-CAM, Integrated Gradients, "
                                    "SHAP, LIME)")
    e.add_argument("run")
    e.add_argument("file", nargs="?", metavar="FILE", help="an image, or a CSV (tabular run)")
    e.add_argument("--method", default="gradcam",
                   help="gradcam | ig | shap | lime (images), shap | lime (tables); several "
                        "comma-separated")
    e.add_argument("--target", type=int, help="class index to explain (default: the predicted "
                                              "class)")
    e.add_argument("--out", help="save the attributions as a .npy file (one method only)")
    e.add_argument("--row", type=int, default=0, help="the CSV row to explain (0 = first)")
    e.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a method parameter, e.g. n_steps=64, num_samples=500, nsamples=128 "
                        "(repeatable; applies to every chosen method that has it, or to one "
                        "as METHOD.KEY=VALUE)")
    e.add_argument("--time-budget", type=float, help="seconds each method may take")
    e.add_argument("--summary", action="store_true",
                   help="tabular runs: SHAP values over a sample of the test split instead")
    e.add_argument("--rows", type=int, default=100, help="test rows in the --summary (100)")
    e.add_argument("--no-cache", action="store_true", help="recompute even if cached")
    e.add_argument("--member", metavar="RUN", help="an ensemble's Grad-CAM or IG: explain this "
                                                   "member only (default: every member)")


@command("predict")
def predict(args: argparse.Namespace) -> Result:
    from core.analyze.predict import predict_files
    from core.models.loaded import load_run

    if args.top_k < 1:
        raise InvalidConfig(f"--top-k must be at least 1, got {args.top_k}.")
    loaded = load_run(args.ws, args.run)
    with progress(args, "predict") as bar:
        results = predict_files(loaded, args.files, progress=bar, batch_size=args.batch_size)
    rows = [r.to_dict(loaded.classes, args.top_k) for r in results]
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"error: {r.error}", file=sys.stderr)
    lines = [f"{r['file']}: " + ("  ".join(f"{t['class']} {t['probability']:.3f}"
                                           for t in r["top_k"]) if "top_k" in r
                                 else f"ERROR {r['error']}") for r in rows]
    return Result({"run_id": loaded.run_id, "classes": loaded.classes, "top_k": args.top_k,
                   "predictions": rows, "errors": len(failed)}, "\n".join(lines),
                  2 if failed else 0)


@command("explain")
def explain(args: argparse.Namespace) -> Result:
    from core.explain.ensemble import explain as explain_any
    from core.explain.runner import explain_summary, read_input

    methods = ["shap"] if args.summary else [m.strip() for m in args.method.split(",")
                                             if m.strip()]  # a summary is SHAP's
    if args.out and len(methods) != 1:
        raise InvalidConfig("--out saves one method's attributions: give one --method.")
    if not args.summary and not args.file:
        raise InvalidConfig("Give the FILE to explain (or --summary for a tabular run).")
    params = _params(args, _modality(args), methods)  # a typo fails before torch loads
    if not args.no_cache and (hit := _cached(args, methods, params)):
        return _report(args, hit)  # read back without torch: no model load, no prediction
    from core.models.loaded import load_run

    loaded = load_run(args.ws, args.run)
    if args.summary:
        with progress(args, "SHAP summary") as bar:
            result = explain_summary(loaded, args.target or 0, args.rows, params["shap"], bar,
                                     use_cache=not args.no_cache)
        return _report(args, [result])
    x, sha, shown = read_input(loaded, args.file, args.row)
    results = []
    for method in methods:
        with progress(args, f"explain {method}") as bar:
            results += explain_any(loaded, args.file, args.row, x, sha, shown, method,
                                   args.target, params[method], bar, not args.no_cache,
                                   args.member)
    return _report(args, results)


def _cached(args: argparse.Namespace, methods: list[str], params: dict[str, dict]
            ) -> list | None:
    from core.explain.lookup import cached_explanations, cached_summary

    if args.summary:
        found = cached_summary(args.ws, args.run, args.target or 0, args.rows, params["shap"])
        return None if found is None else [found]
    return cached_explanations(args.ws, args.run, args.file, methods, args.target, params,
                               args.row, args.member)


def _modality(args: argparse.Namespace) -> str:
    from core.data import get_info

    run = args.ws.store.get_run(args.run)
    return get_info(args.ws, run.config["data"]["dataset"]).modality


def _params(args: argparse.Namespace, modality: str, methods: list[str]) -> dict[str, dict]:
    """Each method's parameters from ``--param KEY=VALUE`` and ``--time-budget``."""
    from core.explain.registry import get_explainer_spec

    specs = {m: get_explainer_spec(m, modality) for m in methods + (["shap"] if args.summary
                                                                     else [])}
    params: dict[str, dict[str, Any]] = {m: {} for m in specs}
    given = [_key_value(p) for p in args.param]
    if args.time_budget is not None:
        given.append(("time_budget_s", args.time_budget))
    for key, value in given:
        method, _, name = key.rpartition(".")  # "lime.batch_size" names its method
        takers = [m for m, spec in specs.items() if name in spec.defaults
                  and method in ("", m)]
        if not takers:
            raise InvalidConfig(f"No chosen method has a parameter {key!r}.")
        for m in takers:
            params[m][name] = value
    return params


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InvalidConfig(f"--param takes KEY=VALUE, got {text!r}.")
    try:
        number = float(value)
    except ValueError:
        return key.strip(), value
    return key.strip(), int(number) if number.is_integer() and "." not in value else number


def _report(args: argparse.Namespace, results: list) -> Result:
    import numpy as np

    from core.explain.cache import explain_dir
    from core.explain.trust import verdict_of

    if args.out:
        np.save(args.out, results[0].attributions)
    folder = explain_dir(args.ws, results[0].run_id)
    payload = [_payload(r, folder) for r in results]
    lines = [f"{p['method']}" + (f" of member {p['run_id']}" if p["run_id"] != args.run else "")
             + f": target {p['target_label']} (p={p['probability']:.3f})"
             + (f", sanity check {verdict_of(p['sanity']).replace('failed', 'FAILED')}"
                f" (similarity {_number(p['sanity']['similarity'])})" if p["sanity"] else "")
             + (f", deletion AUC {p['deletion']['auc']:.3f} vs random "
                f"{p['deletion']['random_auc']:.3f}" if p["deletion"] else "")
             + f"  [{p['seconds']:.1f} s]" for p in payload]
    if args.out:
        lines.append(f"attributions saved to {args.out}")
    return Result(payload[0] if len(payload) == 1 else {"explanations": payload},
                  "\n".join(lines))


def _number(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.2f}"


def _payload(result, folder) -> dict[str, Any]:
    import numpy as np

    probs = result.probs if result.probs.ndim == 1 else result.probs.mean(0)
    return {
        "run_id": result.run_id, "method": result.method, "target": result.target,
        "target_label": result.target_label, "probability": float(probs[result.target]),
        "predicted": result.classes[int(np.argmax(probs))], "params": result.params,
        "input_sha256": result.input_sha, "shape": list(result.attributions.shape),
        "sanity": result.sanity,
        "deletion": {k: result.deletion[k] for k in ("auc", "random_auc")
                     if k in result.deletion},
        "extras": {k: v for k, v in result.extras.items() if not isinstance(v, np.ndarray)},
        "seconds": result.seconds,
        "cache": str(folder / f"{result.method}-{result.key}.json"),
    }
