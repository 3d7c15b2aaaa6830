"""Render helpers of the Deploy page: bundles, latency, the server and its live monitor.

The page never exports, measures or serves in the Streamlit script: each is a background job
(``python -m core export | bench | serve``) whose progress and status come from the store; the
server's activity comes from its request log (``runs/<id>/serve/requests.jsonl``).
"""

from __future__ import annotations

import json
import secrets
import shlex
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from core.deploy import monitor
from core.deploy.bundle import bundle_name, export_dir, list_bundles, read_latency, serve_dir
from core.deploy.serve import LOG_FILE, read_state, write_token
from core.runs import cancel_job, launchers
from core.runs.records import Job, Run
from core.runs.store import Store
from ui import format as fmt
from ui.format import plain
from ui.state import workspace

EXPORTS = {"ONNX fp32": ("onnx", None), "ONNX int8": ("onnx", "int8"),
           "TorchScript": ("torchscript", None)}
MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
PREVIOUS = ".previous"  # export/.previous/: zips of bundles a re-export replaced
BENCH_BUDGET_S = 2.0  # seconds of timing per form: enough for the small models a page trains


# -- jobs --------------------------------------------------------------------------------------


def start_export(s: Store, run: Run, choice: str) -> Job:
    """Export as ``choice``; a bundle of that kind already there is kept (``keep_previous``)."""
    fmt_name, quantize = EXPORTS[choice]
    keep_previous(run, bundle_name(fmt_name, quantize))
    return launchers.start_export(s, run.id, fmt_name, quantize)


def existing_bundle(run: Run, choice: str) -> dict[str, Any] | None:
    """The run's bundle of the kind ``choice`` would write, if there is one."""
    name = bundle_name(*EXPORTS[choice])
    return next((b for b in list_bundles(workspace(), run.id) if b["bundle"] == name), None)


def keep_previous(run: Run, name: str) -> Path | None:
    """Copy bundle ``name``'s zip (manifest, model, runtime: it serves on its own) to
    ``export/.previous/<name>-<exported at>.zip`` before a new export replaces the folder.
    Hidden, so it is never listed, served or cleaned up as a bundle."""
    zipped = export_dir(workspace(), run.id) / f"{name}.zip"
    manifest = export_dir(workspace(), run.id) / name / "manifest.json"
    if not zipped.is_file() or not manifest.is_file():
        return None
    created = json.loads(manifest.read_text()).get("created_at", "")
    stamp = "".join(c for c in created if c.isalnum()) or "unknown"
    target = export_dir(workspace(), run.id) / PREVIOUS / f"{name}-{stamp}.zip"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(zipped, tmp)
        tmp.replace(target)
    return target


def previous_bundles(run: Run) -> list[Path]:
    folder = export_dir(workspace(), run.id) / PREVIOUS
    return sorted(folder.glob("*.zip"), reverse=True) if folder.is_dir() else []


def start_bench(s: Store, run: Run) -> Job:
    return launchers.start_bench(s, run.id, BENCH_BUDGET_S)


def start_server(s: Store, run: Run, bundle: str, port: int, concurrency: int,
                 token: str) -> Job:
    token_file = write_token(workspace(), run.id, token) if token else None
    return launchers.start_serve(s, run.id, bundle, port, concurrency, token_file)


def stop_server(s: Store, job: Job) -> None:
    cancel_job(s, job.id, grace=5.0)  # uvicorn stops on SIGTERM at once; nothing to save
    (serve_dir(workspace(), job.run_id) / "server.json").unlink(missing_ok=True)


def new_token() -> str:
    return secrets.token_urlsafe(24)


# -- bundles -----------------------------------------------------------------------------------


def bundles_frame(bundles: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for m in bundles:
        parity = next((c for c in m.get("checks", {}).values()
                       if isinstance(c, dict) and "batch_1" in c), {})
        acc = m.get("metrics", {}).get("accuracy", {})
        served = next((r for r in m.get("latency", []) if r["variant"] != "eager"), {})
        rows.append({
            "Bundle": m["bundle"], "Exporter": m.get("exporter"),
            "fp32 parity b1": parity.get("batch_1"), "fp32 parity b8": parity.get("batch_8"),
            "int8 agreement": m.get("checks", {}).get("onnx_int8_vs_pytorch", {}).get(
                "top1_agreement"),
            "Acc PyTorch": acc.get("pytorch"),
            "Acc exported": next((v for k, v in acc.items() if k != "pytorch"
                                  and (m["precision"] != "int8" or k == "onnx_int8")), None),
            "Size MB": m["files"][m["model_file"]]["bytes"] / 1e6,
            "p50 ms": served.get("p50_ms"), "Speedup": served.get("speedup_vs_eager"),
            "Created": m.get("created_at", "").replace("T", " ").rstrip("Z"),
        })
    return pd.DataFrame(rows)


def render_bundles(run: Run) -> list[dict[str, Any]]:
    bundles = list_bundles(workspace(), run.id)
    if not bundles:
        st.info("No bundle yet: export one above.")
        return []
    st.dataframe(bundles_frame(bundles), key="deploy_bundles", hide_index=True, width="stretch",
                 column_config={
                     "fp32 parity b1": st.column_config.NumberColumn(
                         format="%.1e", help="max |exported - PyTorch| of the logits, batch 1"),
                     "fp32 parity b8": st.column_config.NumberColumn(format="%.1e"),
                     "int8 agreement": st.column_config.NumberColumn(
                         format="%.4f", help="share of test samples where int8 and PyTorch "
                                             "predict the same class"),
                     "Acc PyTorch": st.column_config.NumberColumn(format="%.4f"),
                     "Acc exported": st.column_config.NumberColumn(format="%.4f"),
                     "Size MB": st.column_config.NumberColumn(format="%.3f"),
                     "p50 ms": st.column_config.NumberColumn(format="%.3f"),
                     "Speedup": st.column_config.NumberColumn(format="%.2fx")})
    names = [b["bundle"] for b in bundles]
    left, right = st.columns([2, 1])
    name = left.selectbox("Bundle", names, key="deploy_bundle_pick")
    chosen = next(b for b in bundles if b["bundle"] == name)
    if chosen.get("zip"):
        right.download_button(
            "Download the bundle (.zip)", data=partial(Path(chosen["zip"]).read_bytes),
            file_name=f"{run.id}-{name}.zip", mime="application/zip", key="deploy_download",
            icon=":material/download:", on_click="ignore", width="stretch")
    with st.expander("Model card"):
        card = Path(chosen["path"]) / "model_card.md"
        st.markdown(card.read_text() if card.is_file() else "No model card.")
    render_previous(run)
    return bundles


def render_previous(run: Run) -> None:
    """Bundles that a re-export replaced, kept as complete zips."""
    kept = previous_bundles(run)
    if not kept:
        return
    with st.expander(f"Previous bundles ({len(kept)})"):
        st.caption("Each re-export keeps the bundle it replaces as a complete zip (manifest, "
                   "model, runtime): unzip it and run `python -m runtime` to serve it.")
        for i, path in enumerate(kept):
            st.download_button(path.name, data=partial(path.read_bytes), file_name=path.name,
                               mime="application/zip", key=f"deploy_previous_{i}",
                               icon=":material/download:", on_click="ignore")


# -- latency -----------------------------------------------------------------------------------


def latency_frame(result: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame([{
        "Variant": r["variant"], "p50 ms": r["p50_ms"], "p95 ms": r["p95_ms"],
        "Samples/s (b32)": r["throughput_per_s"], "Size MB": r["size_bytes"] / 1e6,
        "Test acc": r.get("accuracy"), "Speedup": r.get("speedup_vs_eager"),
        "Smaller": r.get("smaller_vs_eager")} for r in result["rows"]])


def latency_figure(frame: pd.DataFrame):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        "p50 latency, batch 1 (ms)", "Throughput, batch 32 (samples/s)", "Size on disk (MB)"))
    for col, key in enumerate(("p50 ms", "Samples/s (b32)", "Size MB"), start=1):
        fig.add_trace(go.Bar(x=frame["Variant"], y=frame[key], showlegend=False,
                             marker_color="#1f77b4"), row=1, col=col)
    fig.update_layout(height=320, margin=MARGIN)
    return fig


def render_latency(run: Run) -> None:
    result = read_latency(workspace(), run.id)
    if not result:
        st.caption("Not measured yet for this run.")
        return
    frame = latency_frame(result)
    st.dataframe(frame, key="deploy_latency", hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("p50 ms", "p95 ms", "Size MB", "Test acc")})
    st.plotly_chart(latency_figure(frame), key="deploy_latency_chart")
    st.caption(f"Measured {result['created_at'].replace('T', ' ').rstrip('Z')} UTC on "
               f"{result['threads']} CPU thread(s), input {result['input_shape']}; accuracy on "
               f"the {result.get('accuracy_split', 'test')} split.")


# -- the server --------------------------------------------------------------------------------


def curl_example(url: str, modality: str, token_required: bool, spec: dict | None) -> str:
    auth = " \\\n  -H 'Authorization: Bearer YOUR_TOKEN'" if token_required else ""
    if modality == "tabular":
        row = [round(float(m), 3) for m in (spec or {}).get("mean", [])]
        body = shlex.quote(json.dumps({"features": row}))
        return (f"curl -s {url}/predict{auth} \\\n  -H 'Content-Type: application/json' "
                f"-d {body}")
    return f"curl -s {url}/predict{auth} \\\n  -F file=@image.png"


def render_server_info(run: Run) -> None:
    info = read_state(workspace(), run.id)
    if info is None:
        st.info("The server is starting...")
        return
    spec = None
    bundle = Path(info["bundle"])
    if (bundle / "preprocess.json").is_file():
        spec = json.loads((bundle / "preprocess.json").read_text())
    with st.container(key="deploy_server_url"):
        url, version = info["url"], plain(info["model_version"])
        st.markdown(f"Serving **{version}** at [{url}]({url}/docs) (API docs at `/docs`), since "
                    f"{fmt.timestamp(info['started_at'])}.")
    st.code(curl_example(info["url"], info.get("modality", "image"), info["token_required"],
                         spec), language="bash")


@st.fragment(run_every="2s")
def render_live(run_id: str, bundle_path: str | None, since: float | None = None) -> None:
    """Requests, errors, latency histogram, served confidences beside the test split's
    (``since``: only the requests of the server started then)."""
    records = monitor.read_log(serve_dir(workspace(), run_id) / LOG_FILE)
    if since is not None:
        records = [r for r in records if r.get("time", 0) >= since]
    stats = monitor.summarize(records)
    st.caption("Requests to the running server." if since is not None else
               "Every request logged for this run (the server is not running).")
    c = st.columns(4)
    c[0].metric("Requests", stats["requests"])
    c[1].metric("Answered", stats["answered"])
    c[2].metric("Errors", stats["errors"], help="4xx/5xx answers other than 429")
    c[3].metric("Busy (429)", stats["rejected_busy"])
    if not stats["answered"]:
        st.caption("No answered request yet.")
        return
    reference = monitor.reference_confidences(bundle_path) if bundle_path else []
    left, right = st.columns(2)
    left.plotly_chart(_histogram({"served": stats["latency_ms"]}, "Latency (ms)", "ms"),
                      key="deploy_latency_hist")
    right.plotly_chart(_histogram({"served": stats["confidence"], "test split": reference},
                                  "Top-1 confidence: served vs test split", "confidence",
                                  normalise=True), key="deploy_confidence_hist")
    gap = _mean(stats["confidence"]) - _mean(reference) if reference else None
    if gap is not None and gap < -0.1:
        st.warning(f"Served confidences are {abs(gap):.2f} lower on average than on the test "
                   "split: the inputs may differ from the training data (drift).")


def _histogram(series: dict[str, list[float]], title: str, x_title: str,
               normalise: bool = False):
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, values in series.items():
        if values:
            fig.add_trace(go.Histogram(x=values, name=name, opacity=0.6, nbinsx=30,
                                       histnorm="probability" if normalise else ""))
    fig.update_layout(title={"text": title, "font": {"size": 14}}, barmode="overlay",
                      height=300, margin=MARGIN, xaxis_title=x_title,
                      legend={"orientation": "h", "y": -0.3})
    return fig


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
