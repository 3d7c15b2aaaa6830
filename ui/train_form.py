"""The "new run" form of the Train page: every trainer option, with defaults per dataset and model.

The form's widgets are keyed ``train_<field>`` and read their values from session state, so a
default (a dataset or model change) or a clone (another run's config) is applied by writing
state before the widgets are drawn, in a callback.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.config import AMP_MODES, AUGMENTATIONS, OPTIMIZERS, SCHEDULERS, RunConfig
from core.errors import ModelNotFound
from core.models import ModelSpec, default_model, get_spec, list_models
from ui.format import plain
from ui.state import flash
from ui.tracker_settings import render_tracker_settings

MONITORS = ("val/loss", "val/acc", "train/loss", "train/acc")
DEVICES = ("auto", "cpu", "cuda")
# Widget key suffix (``train_<suffix>``) -> (config section, field).
_FIELDS: dict[str, tuple[str, str]] = {
    "dataset": ("data", "dataset"), "image_size": ("data", "image_size"),
    "augment": ("data", "augment"), "num_workers": ("data", "num_workers"),
    "pin_memory": ("data", "pin_memory"),
    "model": ("model", "name"), "pretrained": ("model", "pretrained"),
    "weights": ("model", "weights"), "freeze_backbone": ("model", "freeze_backbone"),
    **{f: ("train", f) for f in (
        "epochs", "batch_size", "lr", "optimizer", "weight_decay", "scheduler", "step_size",
        "gamma", "label_smoothing", "amp", "grad_accum", "patience", "monitor", "mode", "seed",
        "device", "nproc", "max_grad_norm", "class_weights", "balanced_sampler",
        "resource_every", "mlflow", "tensorboard")},
}
# Optional fields: None is shown as 0 or "" in the widget.
_NONE_AS = {"image_size": 0, "patience": 0, "max_grad_norm": 0.0, "weights": "", "mlflow": "",
            "tensorboard": ""}
# Cross-validation from the form: a switch and K (``data.cv``; the CLI allows more folds).
CV_FOLDS = (2, 10)
CV_DEFAULT = 5
CV_HELP = "K stratified folds over train+val; the test split stays held out."


def model_choices(modality: str) -> list[str]:
    """The registered models that accept ``modality``, in registry order."""
    return [spec.name for spec in list_models(modality)]


def model_spec(name: str) -> ModelSpec | None:
    try:
        return get_spec(name)
    except ModelNotFound:
        return None


def suggested_config(info: Any, model: str) -> RunConfig:
    """Sensible defaults for ``model`` on the dataset ``info`` (a DatasetInfo)."""
    cfg = RunConfig()
    cfg.data.dataset, cfg.model.name = info.name, model
    t = cfg.train
    train_size = info.split_counts.get("train", 0)
    if info.modality == "tabular":
        t.epochs, t.batch_size, t.lr = 30, 32, 1e-3
    else:
        t.epochs, t.batch_size, t.lr = 10, 64, 1e-3
    choice = model_spec(model)
    if choice is not None and choice.pretrained_available:
        # torchvision backbones downsample 32x: tiny images are upscaled to stay useful.
        t.batch_size, t.lr = 32, 5e-4
        if info.image_size and info.image_size < 32:
            cfg.data.image_size = 32
    if train_size and train_size < 1000:
        t.batch_size = min(t.batch_size, 32)
    return cfg


def config_to_state(cfg: RunConfig, run_name: str = "") -> None:
    """Write ``cfg`` into the form's widget state (call from a callback or before the form)."""
    raw = cfg.to_dict()
    for suffix, (section, name) in _FIELDS.items():
        value = raw[section][name]
        st.session_state[f"train_{suffix}"] = _NONE_AS.get(suffix) if value is None else value
    st.session_state["train_run_name"] = run_name
    # A fold's config (``fold`` set) is one training: its clone is a normal run, not a new CV.
    parent_cv = cfg.data.cv if cfg.data.fold is None else None
    st.session_state["train_cv"] = parent_cv is not None
    k = parent_cv or st.session_state.get("train_cv_k", CV_DEFAULT)
    st.session_state["train_cv_k"] = min(max(k, CV_FOLDS[0]), CV_FOLDS[1])


def state_to_config() -> RunConfig:
    """The form's values as a validated config (raises ``InvalidConfig``)."""
    raw: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {}}
    for suffix, (section, name) in _FIELDS.items():
        value = st.session_state.get(f"train_{suffix}")
        if suffix in _NONE_AS and value == _NONE_AS[suffix]:
            value = None
        raw[section][name] = value
    t = raw["train"]
    if t["mode"] == "auto":
        t["mode"] = "max" if t["monitor"].endswith("acc") else "min"
    for name in ("epochs", "batch_size", "step_size", "grad_accum", "seed", "nproc"):
        t[name] = int(t[name])
    choice = model_spec(raw["model"]["name"])
    raw["model"]["pretrained"] = bool(raw["model"]["pretrained"] and choice
                                      and choice.pretrained_available)
    raw["data"]["augment"] = list(raw["data"]["augment"] or [])
    raw["data"]["cv"] = int(st.session_state["train_cv_k"]) if st.session_state.get(
        "train_cv") else None
    return RunConfig.from_dict(raw)


def ensure_defaults(infos: dict[str, Any]) -> None:
    """Seed the form the first time it is drawn in this session (or after its dataset vanished)."""
    name = st.session_state.get("train_dataset")
    if name in infos and "train_epochs" in st.session_state:
        st.session_state.setdefault("train_cv_k", CV_DEFAULT)
        return
    name = "digits" if "digits" in infos else next(iter(infos))
    config_to_state(suggested_config(infos[name], default_model(infos[name].modality)))
    st.session_state["train_mode"] = "auto"


def apply_defaults(infos: dict[str, Any]) -> None:
    """Callback: the dataset or the model changed, so suggest that pair's defaults."""
    info = infos[st.session_state["train_dataset"]]
    model = st.session_state.get("train_model")
    if model not in model_choices(info.modality):
        model = default_model(info.modality)
    name = st.session_state.get("train_run_name", "")
    cfg = suggested_config(info, model)
    if st.session_state.get("train_cv"):  # the CV choice is the user's, not the pair's default
        cfg.data.cv = int(st.session_state.get("train_cv_k", CV_DEFAULT))
    config_to_state(cfg, run_name=name)
    st.session_state["train_mode"] = "auto"


def prefill_from(run_config: dict[str, Any], label: str, infos: dict[str, Any]) -> None:
    """Callback for Clone: the form takes another run's config."""
    cfg = RunConfig.from_dict(run_config)
    if cfg.data.dataset not in infos:
        flash(f"Cannot clone: the dataset {plain(cfg.data.dataset)} no longer exists.",
              "error")
        return
    config_to_state(cfg, run_name=f"{label} (clone)")
    flash(f"The form below is prefilled with the config of {plain(label)}. Change it and "
          "launch.", "info")


def render_new_run_form(infos: dict[str, Any]) -> tuple[RunConfig, str] | None:
    """Draw the form; on Launch, return the config and the run name (validated by the caller)."""
    ensure_defaults(infos)
    info = infos[st.session_state["train_dataset"]]
    left, right = st.columns(2)
    left.selectbox("Dataset", list(infos), key="train_dataset", on_change=apply_defaults,
                   args=(infos,), help="Built-in or imported (see the Data page).")
    choices = model_choices(info.modality)
    if st.session_state.get("train_model") not in choices:
        st.session_state["train_model"] = default_model(info.modality)
    right.selectbox("Model", choices, key="train_model", on_change=apply_defaults, args=(infos,),
                    help=" · ".join(f"{c}: {model_spec(c).description}" for c in choices))
    st.caption(f"{info.modality} data, {len(info.classes)} classes, "
               f"{info.split_counts.get('train', 0)} training samples")
    with st.form("train_form", border=False):
        _render_basic()
        with st.expander("Advanced options"):
            _render_advanced(info)
        submitted = st.form_submit_button("Launch", type="primary", icon=":material/play_arrow:")
    render_tracker_settings()
    if not submitted:
        return None
    return state_to_config(), st.session_state.get("train_run_name", "")


def _render_basic() -> None:
    c = st.columns(4)
    c[0].number_input("Epochs", 1, 10_000, key="train_epochs",
                      help="Full passes over the training split.")
    c[1].number_input("Batch size", 1, 65_536, key="train_batch_size",
                      help="Samples per micro-batch (per process).")
    c[2].number_input("Learning rate", 1e-7, 10.0, key="train_lr", format="%.6f", step=1e-4,
                      help="Peak step size of the optimizer.")
    c[3].selectbox("Optimizer", OPTIMIZERS, key="train_optimizer",
                   help="adam/adamw adapt per parameter; sgd uses momentum 0.9.")
    c = st.columns(4)
    c[0].selectbox("LR schedule", SCHEDULERS, key="train_scheduler",
                   help="cosine: decays to 0; step: x gamma every step size epochs; "
                        "onecycle: warm up then anneal.")
    c[1].number_input("Early-stopping patience", 0, 1000, key="train_patience",
                      help="Stop after this many epochs without improvement of the monitored "
                           "metric. 0: off.")
    c[2].text_input("Run name", key="train_run_name", help="A label for the run (optional).")
    c[3].number_input("Seed", 0, 2**31 - 1, key="train_seed",
                      help="The same config and seed reproduce the run.")
    c = st.columns(4, vertical_alignment="bottom")
    c[0].toggle("Cross-validation", key="train_cv", help=CV_HELP)
    c[1].number_input("Folds (K)", *CV_FOLDS, key="train_cv_k",
                      help=f"{CV_HELP} Used when cross-validation is on: K fold runs go "
                           "through the queue under one parent run.")


def _render_advanced(info: Any) -> None:
    is_image = info.modality == "image"
    choice = model_spec(st.session_state.get("train_model", ""))
    c = st.columns(4)
    c[0].number_input("Weight decay", 0.0, 1.0, key="train_weight_decay", format="%.6f",
                      step=1e-4, help="L2 penalty (decoupled for adamw).")
    c[1].number_input("Label smoothing", 0.0, 0.99, key="train_label_smoothing", step=0.05,
                      help="Soften the one-hot targets (0: off).")
    c[2].number_input("Step size (epochs)", 1, 10_000, key="train_step_size",
                      help="For the step schedule: epochs between decays.")
    c[3].number_input("Gamma", 0.0, 1.0, key="train_gamma", step=0.05,
                      help="For the step schedule: the decay factor.")
    c = st.columns(4)
    c[0].selectbox("Monitor", MONITORS, key="train_monitor",
                   help="The metric that picks best.pt and drives early stopping.")
    c[1].selectbox("Mode", ("auto", "min", "max"), key="train_mode",
                   help="min for losses, max for accuracies; auto picks from the name.")
    c[2].number_input("Gradient accumulation", 1, 1024, key="train_grad_accum",
                      help="Micro-batches per optimizer step (a larger effective batch).")
    c[3].number_input("Max gradient norm", 0.0, 1e6, key="train_max_grad_norm", step=0.5,
                      help="Clip gradients to this norm. 0: off.")
    c = st.columns(4)
    c[0].selectbox("Mixed precision", AMP_MODES, key="train_amp",
                   help="auto: bf16/fp16 on CUDA, off on CPU.")
    c[1].selectbox("Device", DEVICES, key="train_device", accept_new_options=True,
                   help="auto: a GPU when there is one. Type cuda:N for a given GPU.")
    c[2].number_input("Processes (DDP)", 1, 64, key="train_nproc",
                      help="Distributed data parallel over this many processes (torchrun).")
    c[3].number_input("Data loader workers", 0, 64, key="train_num_workers",
                      help="0 is fastest for the small built-ins.")
    c = st.columns(4)
    c[0].number_input("Image size", 0, 1024, key="train_image_size", disabled=not is_image,
                      help=f"Square size images are resized to. 0: the dataset's own "
                           f"({info.image_size or 'n/a'}).")
    c[1].multiselect("Augmentations", AUGMENTATIONS, key="train_augment", disabled=not is_image,
                     help="Random transforms of the training images (preview them on Data).")
    c[2].checkbox("Pin memory", key="train_pin_memory", help="Only useful on CUDA.")
    c[3].checkbox("Freeze backbone", key="train_freeze_backbone",
                  help="Train only the classification head (transfer learning).")
    c = st.columns([1, 3])
    c[0].checkbox("Pretrained", key="train_pretrained",
                  disabled=not (choice and choice.pretrained_available),
                  help="ImageNet weights from the local torch cache (nothing is downloaded).")
    c[1].text_input("Weights file", key="train_weights",
                    help="A torchvision state dict or another run's checkpoint (path on the "
                         "server). Leave empty to start from scratch.")
    _render_balance_and_tracking()


def _render_balance_and_tracking() -> None:
    c = st.columns(3)
    c[0].checkbox("Class weights", key="train_class_weights",
                  help="Weight the loss by inverse class frequency (imbalanced classes).")
    c[1].checkbox("Balanced sampler", key="train_balanced_sampler",
                  help="Draw training samples so every class is equally likely (with "
                       "replacement). Resumes exactly, works with DDP.")
    c[2].number_input("Machine sampling (s)", 0.0, 600.0, key="train_resource_every", step=1.0,
                      help="Seconds between CPU/RAM/GPU samples drawn under the curves. 0: off.")
    tracking = ("Empty: the workspace setting (Trackers for every run, below; or "
                "`python -m core trackers`); off: not this run.")
    c = st.columns(2)
    c[0].text_input("MLflow tracking URI", key="train_mlflow", placeholder="http://127.0.0.1:5000",
                    help="Also log params, metrics, checkpoint and ONNX files to MLflow. "
                         + tracking)
    c[1].text_input("TensorBoard folder", key="train_tensorboard", placeholder="/path/to/tb",
                    help="Also write TensorBoard scalars and hparams (one subfolder per run). "
                         + tracking)
