"""Deploy: export a run (ONNX / TorchScript, int8), compare latencies, download the bundle, and
serve it over HTTP with a live view of the requests.

Every action is a background job (``python -m core export | bench | serve``); the page draws
what the store, the bundles and the server's request log hold.
"""

from __future__ import annotations

import streamlit as st

from core.deploy.runtime.settings import Settings
from core.deploy.serve import read_state
from core.errors import UserError
from core.runs import reconcile
from core.runs.store import Store
from ui import state
from ui.deploy_views import (
    EXPORTS,
    existing_bundle,
    new_token,
    render_bundles,
    render_latency,
    render_live,
    render_server_info,
    start_bench,
    start_export,
    start_server,
    stop_server,
)
from ui.jobs import render_job, watch_job
from ui.router import require_router
from ui.runs import pick_run_with_checkpoint

KEPT_FORMAT = "_deploy_format_kept"


def render_export(s: Store, run) -> list:
    st.subheader("Export")
    job = s.latest_job(run.id, "export")
    if job is not None and job.is_active:
        watch_job(job.id, f"Exporting {job.key}")
    else:
        render_job(job, "The last export")
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        # The widget is not drawn while an export runs, and Streamlit then forgets its value:
        # the choice is kept under another key so the picker shows it again afterwards.
        st.session_state.setdefault("deploy_format", st.session_state.get(KEPT_FORMAT,
                                                                           "ONNX fp32"))
        choice = left.segmented_control("Format", list(EXPORTS), key="deploy_format")
        st.session_state[KEPT_FORMAT] = choice
        previous = existing_bundle(run, choice) if choice else None
        if right.button("Export", key="deploy_export", icon=":material/upload:", width="stretch",
                        type="primary", disabled=choice is None):
            start_export(s, run, choice)
            st.rerun()
        if previous is not None:
            st.caption(f"{previous['bundle']} exists (exported "
                       f"{previous.get('created_at', '?').replace('T', ' ').rstrip('Z')} UTC): "
                       "exporting again replaces it and keeps it as a zip under *Previous "
                       "bundles*.")
    st.caption("Checked on the test split: onnx.checker, ONNX vs PyTorch at batch 1 and 8 "
               "(fp32 within 1e-4), accuracy of every form side by side.")
    return render_bundles(run)


def render_bench(s: Store, run) -> None:
    st.subheader("Latency: eager, TorchScript, ONNX fp32, ONNX int8")
    job = s.latest_job(run.id, "bench")
    if job is not None and job.is_active:
        watch_job(job.id, "Measuring")
    else:
        render_job(job, "The last measurement")
        if st.button("Measure all four", key="deploy_bench", icon=":material/speed:"):
            start_bench(s, run)
            st.rerun()
    render_latency(run)


def render_serve(s: Store, run, bundles: list) -> None:
    st.subheader("Serve")
    job = s.latest_job(run.id, "serve")
    onnx = [b["bundle"] for b in bundles if b.get("format") == "onnx"]
    if job is not None and job.is_active:
        render_server_info(run)
        if st.button("Stop the server", key="deploy_stop", icon=":material/stop:"):
            stop_server(s, job)
            st.rerun()
    elif not onnx:
        st.info("Export an ONNX bundle first: the server runs ONNX bundles only.")
    else:
        if job is not None and job.status != "cancelled":  # a stopped server is no news
            render_job(job, "The last server")
        render_start_form(s, run, onnx)
    if onnx:
        served = read_state(state.workspace(), run.id) if job is not None and job.is_active \
            else None
        render_live(run.id, served["bundle"] if served else
                    next(b["path"] for b in bundles if b["bundle"] == onnx[0]),
                    since=served["started_at"] if served else None)


def render_start_form(s: Store, run, onnx: list[str]) -> None:
    with st.form("deploy_serve_form", border=True):
        c = st.columns([2, 1, 1])
        bundle = c[0].selectbox("Bundle", onnx, key="deploy_serve_bundle")
        port = c[1].number_input("Port", 1024, 65535, 8000, key="deploy_port")
        concurrency = c[2].number_input(
            "Inference slots", 1, 64, 4, key="deploy_concurrency",
            help=f"Batches run at once; more requests wait in the queue (up to "
                 f"{Settings.queue_timeout_s:g} s, {Settings.max_queue} of them), and those "
                 f"arriving within {Settings.batch_window_ms:g} ms run as one batch.")
        token = st.text_input("Bearer token (optional)", key="deploy_token", type="password",
                              help="Requests without it get 401. Kept in a file readable only "
                                   "by you, never on a command line.")
        st.caption("The server listens on 127.0.0.1 only. Start it from the CLI with --host to "
                   "expose it, and set a token if you do.")
        if st.form_submit_button("Start the server", icon=":material/play_arrow:"):
            start_server(s, run, bundle, int(port), int(concurrency), token.strip())
            st.rerun()
    if st.button("Generate a token", key="deploy_new_token"):
        st.code(new_token(), language=None)
        st.caption("Paste it into the form above, and give it to your clients.")


require_router()
st.title("Deploy")
state.render_flashes()
s = state.reconciled_store()
reconcile(s)  # a server (or export) whose process died shows as stopped, not running
run = pick_run_with_checkpoint(s, "deploy_run")
if run is None:
    st.stop()

try:
    bundles = render_export(s, run)
    render_bench(s, run)
    render_serve(s, run, bundles)
except UserError as exc:
    st.error(str(exc))
