"""The human-readable parts of a bundle: the model card, the Dockerfile and its requirements,
and ``serve.py``, the launcher of the bundle's ``runtime/`` package."""

from __future__ import annotations

from importlib import metadata
from typing import Any

SERVE_PACKAGES = ("onnxruntime", "numpy", "pillow", "fastapi", "uvicorn", "python-multipart")

DOCKERFILE = """\
# Serves this bundle on CPU with onnxruntime (no torch). Build and run from this folder:
#   docker build -t {tag} .
#   docker run --rm -p 127.0.0.1:8000:8000 -e LAB2MARKET_TOKEN=change-me {tag}
# Inside the container the server listens on 0.0.0.0 so the published port reaches it; publish
# it on 127.0.0.1 (as above) unless it must be reachable from other machines, and set a token.
# The runtime verifies every file against manifest.json at start and refuses a modified bundle:
# customise in a Dockerfile of your own (FROM {tag}), not by editing these files.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /bundle
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN useradd --create-home --uid 10001 app && mkdir -p /logs && chown app /logs
USER app
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request as u; \\
    u.urlopen('http://127.0.0.1:8000/health', timeout=3)"
CMD ["python", "-m", "runtime", "--bundle", "/bundle", "--host", "0.0.0.0", "--port", "8000", \\
     "--log", "/logs/requests.jsonl"]
"""

SERVE_LAUNCHER = '''"""Serve this bundle: ``python serve.py`` (the same as ``python -m runtime``).

The server is the ``runtime`` package beside this file; it checks every file of the bundle
against manifest.json before it serves anything.
"""

from runtime.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())
'''


def requirements() -> str:
    """The serving stack, pinned to the versions this bundle was checked with."""
    lines = ["# Serving this bundle: CPU inference with onnxruntime (no torch needed)."]
    for name in SERVE_PACKAGES:
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            lines.append(name)
    return "\n".join(lines) + "\n"


def dockerfile(tag: str) -> str:
    return DOCKERFILE.format(tag=tag)


def model_card(m: dict[str, Any]) -> str:
    """Markdown: data, metrics, classes, input spec, checks, latency, files, how to serve."""
    spec, metrics = m["preprocess"], m.get("metrics", {})
    lines = [
        f"# Model card: {m['model']} on {m['dataset']} ({m['bundle']})", "",
        f"Exported by Lab2Market from run `{m['run_id']}` on {m['created_at']}, checkpoint "
        f"`{m['checkpoint']}`.", "",
        "## Data", "", m.get("dataset_description") or m["dataset"], "",
        "| split | samples |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in m.get("split_counts", {}).items()], "",
        "## Classes", "", ", ".join(f"`{c}`" for c in m["classes"]), "",
        "## Input", "", f"- tensor `{m['input']['name']}`: {m['input']['shape']} float32",
        *[f"- {k}: {v}" for k, v in spec.items() if k not in ("mean", "std", "feature_names")],
        f"- mean: {spec.get('mean')}; std: {spec.get('std')}", "",
        "## Metrics (test split)", "", "| model | accuracy |", "|---|---|",
        *[f"| {k} | {_pct(v)} |" for k, v in metrics.get("accuracy", {}).items()],
        f"\n{metrics.get('test_samples', 0)} test samples; validation accuracy at training: "
        f"{_pct(metrics.get('val_acc'))}.", "",
        "## Checks", "", *_checks(m), "",
        "## Latency (CPU, this machine at export time)", "", *_latency(m.get("latency")), "",
        "## Files", "", "Every file of this bundle is listed in `manifest.json` with its sha256; "
        "the server refuses the bundle if any of them changed.", "",
        "## Serve", "",
        "```", "docker build -t lab2market-model . && "
        "docker run --rm -p 127.0.0.1:8000:8000 lab2market-model",
        "# or, without Docker, from this folder:",
        "pip install -r requirements.txt && python -m runtime --port 8000",
        "curl -F file=@image.png http://127.0.0.1:8000/predict" if spec["modality"] == "image"
        else "curl -H 'Content-Type: application/json' -d '{\"features\": [...]}' "
             "http://127.0.0.1:8000/predict", "```", "",
        "## Limits", "",
        "Trained and measured on the splits above only; accuracy on other data is unknown. "
        "Watch the served confidences against the test split's (the Deploy page shows both).",
    ]
    return "\n".join(lines) + "\n"


def _checks(m: dict[str, Any]) -> list[str]:
    from core.deploy.ensemble_export import ensemble_check_line

    checks = m.get("checks", {})
    out = [f"- exporter: {m.get('exporter')}"]
    if "onnx_checker" in checks:
        out.append(f"- onnx.checker: {'passed' if checks['onnx_checker'] else 'failed'}")
    for name, diffs in checks.items():
        if isinstance(diffs, dict) and "batch_1" in diffs:
            text = ", ".join(f"{k.replace('_', ' ')}: {v:.2e}" for k, v in diffs.items()
                             if k.startswith("batch_"))
            extra = f" (tolerance {diffs['tolerance']:g})" if "tolerance" in diffs else ""
            out.append(f"- {name.replace('_', ' ')}, max |difference| of the logits: "
                       f"{text}{extra}")
        elif isinstance(diffs, dict) and "max_abs_diff_probability" in diffs:
            out.append(ensemble_check_line(m, diffs))
        elif isinstance(diffs, dict) and "top1_agreement" in diffs:
            out.append(f"- {name.replace('_', ' ')}: top-1 agreement with PyTorch "
                       f"{_pct(diffs['top1_agreement'])}, max |difference| of the logits "
                       f"{diffs['max_abs_diff']:.3g}")
    return out


def _latency(rows: list[dict[str, Any]] | None) -> list[str]:
    if not rows:
        return ["Not measured."]
    out = ["| variant | p50 ms (batch 1) | p95 ms | samples/s (batch 32) | size |",
           "|---|---|---|---|---|"]
    out += [f"| {r['variant']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
            f"{r['throughput_per_s']:.0f} | {r['size_bytes'] / 1e6:.2f} MB |" for r in rows]
    return out


def _pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "—"
