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
from pathlib import Path

from core.cli.main import command, emit, progress
from core.errors import InvalidConfig


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    e = sub.add_parser("export", parents=[common], help="export a run (ONNX or TorchScript), "
                                                        "checked and bundled")
    e.add_argument("run")
    e.add_argument("--format", default="onnx", choices=("onnx", "torchscript"))
    e.add_argument("--quantize", choices=("int8",), help="static int8 (ONNX only)")
    e.add_argument("--calibration", type=int, default=200,
                   help="training samples used to calibrate int8 (200)")
    e.add_argument("--latency-budget", type=float, default=2.0,
                   help="seconds spent timing each form (2)")

    b = sub.add_parser("bench", parents=[common], help="latency, throughput, size and accuracy "
                                                       "of eager, TorchScript, ONNX fp32 and int8")
    b.add_argument("run")
    b.add_argument("--budget", type=float, default=4.0, help="seconds of timing per form (4)")

    sub.add_parser("bundles", parents=[common], help="list a run's export bundles").add_argument(
        "run")

    s = sub.add_parser("serve", parents=[common], help="serve a run's ONNX bundle over HTTP")
    s.add_argument("target", metavar="RUN|BUNDLE", help="a run id (its newest ONNX bundle) or a "
                                                        "bundle folder")
    s.add_argument("--bundle", help="which of the run's bundles (e.g. onnx-int8)")
    s.add_argument("--host", default="127.0.0.1", help="default: loopback only")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (also "
                                   "$LAB2MARKET_TOKEN); prefer --token-file")
    s.add_argument("--token-file", help="read the bearer token from this file")
    s.add_argument("--max-concurrency", type=int, default=4,
                   help="requests in flight before the server answers 429 (4)")
    s.add_argument("--max-body-mb", type=float, default=8.0, help="body cap, 413 above (8)")
    s.add_argument("--max-pixels", type=int, default=40_000_000, help="pixel cap, 422 above")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds per request (10)")
    s.add_argument("--top-k", type=int, default=3)
    s.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: auto)")
    s.add_argument("--log", help="JSONL request log (default: runs/RUN/serve/requests.jsonl)")


@command("export")
def export(args: argparse.Namespace) -> int:
    from core.deploy.export import export_run

    with progress(args, f"export {args.format}") as bar:
        manifest = export_run(args.run, args.home, args.format, args.quantize,
                              calibration=args.calibration,
                              latency_budget_s=args.latency_budget, progress=bar)
    emit(args, _summary(manifest), _export_text(manifest))
    return 0


@command("bench")
def bench(args: argparse.Namespace) -> int:
    from core.deploy.export import benchmark_run

    with progress(args, "bench") as bar:
        result = benchmark_run(args.run, args.home, budget_s=args.budget, progress=bar)
    lines = [f"{'variant':12} {'p50 ms':>8} {'p95 ms':>8} {'samples/s':>10} {'MB':>7} "
             f"{'acc':>7} {'speedup':>8}"]
    lines += [f"{r['variant']:12} {r['p50_ms']:8.3f} {r['p95_ms']:8.3f} "
              f"{r['throughput_per_s']:10.0f} {r['size_bytes'] / 1e6:7.2f} "
              f"{r.get('accuracy') or 0:7.4f} {r.get('speedup_vs_eager', 1):7.2f}x"
              for r in result["rows"]]
    emit(args, result, "\n".join(lines))
    return 0


@command("bundles")
def bundles_list(args: argparse.Namespace) -> int:
    from core.deploy.bundle import list_bundles

    found = list_bundles(args.home, args.run)
    emit(args, {"run_id": args.run, "bundles": [_summary(m) for m in found]},
         "\n".join(f"{m['bundle']:18} {m['created_at']}  {m['path']}" for m in found)
         or f"Run {args.run} has no bundles yet.")
    return 0


@command("serve")
def serve(args: argparse.Namespace) -> int:
    from core.deploy import serve as server
    from core.deploy.runtime import Settings

    if args.max_concurrency < 1 or args.top_k < 1 or args.timeout <= 0 or args.max_body_mb <= 0:
        raise InvalidConfig("--max-concurrency and --top-k must be >= 1; --timeout and "
                            "--max-body-mb > 0.")
    model, run_id = server.load_model(args.target, args.home, args.bundle, args.threads)
    settings = Settings(
        token=_token(args), max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_pixels=args.max_pixels, max_concurrency=args.max_concurrency,
        timeout_s=args.timeout, top_k=args.top_k, threads=args.threads,
        log_path=Path(args.log) if args.log else server.log_path(args.home, run_id, model))

    def ready(url: str) -> None:
        print(f"Serving {model.version} on {url} (docs: {url}/docs); Ctrl-C stops it.",
              file=sys.stderr)
        if getattr(args, "task", None):
            from core.runs.store import Store

            Store(args.home).update_task(args.task, message=url)

    state_dir = server.serve_dir(server.resolve_home(args.home), run_id) if run_id else None
    server.serve(model, settings, args.host, args.port, state_dir=state_dir, on_ready=ready)
    emit(args, {"stopped": True, "model_version": model.version}, "Server stopped.")
    return 0


def _token(args: argparse.Namespace) -> str | None:
    import os

    if args.token_file:
        try:
            return Path(args.token_file).read_text().strip() or None
        except OSError as exc:
            raise InvalidConfig(f"Cannot read the token file {args.token_file}: "
                                f"{exc.strerror}.") from None
    return args.token or os.environ.get("LAB2MARKET_TOKEN") or None


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
