"""``python -m core export | bench | bundles | serve``: ship a run.

- ``export RUN --format onnx|torchscript [--quantize int8]``: a checked bundle under
  ``runs/RUN/export/`` (its JSON holds parity, accuracy and the latency of the exported form
  against eager PyTorch).
- ``bench RUN``: all four forms side by side (eager, TorchScript, ONNX fp32, ONNX int8):
  p50/p95 latency at batch 1, throughput at batch 32, size, test accuracy.
- ``bundles RUN``: the run's bundles.
- ``serve RUN|BUNDLE``: the REST server (loopback by default), until interrupted.
"""

from __future__ import annotations

import argparse
import sys

from core.cli.base import Result, add_command, command, progress
from core.deploy.runtime.settings import add_server_arguments


def add_parsers(sub) -> None:
    e = add_command(sub, "export", "export a run (ONNX or TorchScript), checked and bundled")
    e.add_argument("run")
    e.add_argument("--format", default="onnx", choices=("onnx", "torchscript"))
    e.add_argument("--quantize", choices=("int8",), help="static int8 (ONNX only)")
    e.add_argument("--calibration", type=int, default=200,
                   help="training samples used to calibrate int8 (200)")
    e.add_argument("--latency-budget", type=float, default=2.0,
                   help="seconds spent timing each form (2)")

    b = add_command(sub, "bench", "latency, throughput, size and accuracy of eager, "
                                  "TorchScript, ONNX fp32 and int8")
    b.add_argument("run")
    b.add_argument("--budget", type=float, default=4.0, help="seconds of timing per form (4)")

    add_command(sub, "bundles", "list a run's export bundles").add_argument("run")

    s = add_command(sub, "serve", "serve a run's ONNX bundle over HTTP")
    s.add_argument("target", metavar="RUN|BUNDLE", help="a run id (its newest ONNX bundle) or a "
                                                        "bundle folder")
    s.add_argument("--bundle", help="which of the run's bundles (e.g. onnx-int8)")
    add_server_arguments(s, "JSONL request log (default: runs/RUN/serve/requests.jsonl, or "
                            "serve/<digest>/ in the workspace for a bundle folder)")


@command("export")
def export(args: argparse.Namespace) -> Result:
    from core.deploy.export import export_run

    with progress(args, f"export {args.format}") as bar:
        manifest = export_run(args.ws, args.run, args.format, args.quantize,
                              calibration=args.calibration,
                              latency_budget_s=args.latency_budget, progress=bar)
    return Result(_summary(manifest), _export_text(manifest))


@command("bench")
def bench(args: argparse.Namespace) -> Result:
    from core.deploy.export import benchmark_run

    with progress(args, "bench") as bar:
        result = benchmark_run(args.ws, args.run, budget_s=args.budget, progress=bar)
    lines = [f"{'variant':12} {'p50 ms':>8} {'p95 ms':>8} {'samples/s':>10} {'MB':>7} "
             f"{'acc':>7} {'speedup':>8}"]
    lines += [f"{r['variant']:12} {r['p50_ms']:8.3f} {r['p95_ms']:8.3f} "
              f"{r['throughput_per_s']:10.0f} {r['size_bytes'] / 1e6:7.2f} "
              f"{r.get('accuracy') or 0:7.4f} {r.get('speedup_vs_eager', 1):7.2f}x"
              for r in result["rows"]]
    return Result(result, "\n".join(lines))


@command("bundles")
def bundles_list(args: argparse.Namespace) -> Result:
    from core.deploy.bundle import list_bundles

    found = list_bundles(args.ws, args.run)
    return Result({"run_id": args.run, "bundles": [_summary(m) for m in found]},
                  "\n".join(f"{m['bundle']:18} {m['created_at']}  {m['path']}" for m in found)
                  or f"Run {args.run} has no bundles yet.")


@command("serve")
def serve(args: argparse.Namespace) -> Result:
    from core.deploy import serve as server

    model, run_id = server.load_model(args.ws, args.target, args.bundle, args.threads)
    settings = server.make_settings(args.ws, args, run_id, model)

    def ready(url: str) -> None:
        print(f"Serving {model.version} on {url} (docs: {url}/docs); Ctrl-C stops it.",
              file=sys.stderr)
        if getattr(args, "job", None):
            args.ws.store.update_job(args.job, message=url)

    state_dir = server.serve_dir(args.ws, run_id) if run_id else None
    server.serve(model, settings, args.host, args.port, state_dir=state_dir, on_ready=ready)
    return Result({"stopped": True, "model_version": model.version}, "Server stopped.")


def _summary(m: dict) -> dict:
    keys = ("bundle", "run_id", "format", "precision", "exporter", "model_file", "created_at",
            "input", "checks", "metrics", "latency", "quantization", "path", "zip", "files")
    return {k: m[k] for k in keys if k in m}


def _export_text(m: dict) -> str:
    acc = "  ".join(f"{k} {v:.4f}" for k, v in m["metrics"]["accuracy"].items())
    lines = [f"Exported {m['bundle']} ({m['exporter']}) to {m['path']}",
             f"test accuracy: {acc}"]
    for name, check in m["checks"].items():
        if isinstance(check, dict):
            lines.append(f"{name}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float)
                                                 else f"{k}={v}" for k, v in check.items()))
    lines += [f"latency {r['variant']}: p50 {r['p50_ms']:.3f} ms, p95 {r['p95_ms']:.3f} ms, "
              f"{r['throughput_per_s']:.0f} samples/s" for r in m.get("latency", [])]
    lines.append(f"zip: {m['zip']}")
    return "\n".join(lines)
