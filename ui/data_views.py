"""Render helpers of the Data page: the datasets table, class counts, samples, augmentations."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core.errors import UserError
from core.progress import ProgressFn
from core.workspace import Workspace
from ui import state
from ui.charts import class_distribution_figure
from ui.format import plain

THUMB = 72  # px: small images (digits are 8x8) are enlarged to this, without smoothing
SAMPLES_PER_CLASS = 8


def datasets_frame(infos: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame([{
        "Dataset": i.name, "Source": "built-in" if i.builtin else "imported",
        "Modality": i.modality, "Classes": len(i.classes),
        "Train": i.split_counts.get("train", 0), "Val": i.split_counts.get("val", 0),
        "Test": i.split_counts.get("test", 0),
        "Shape": (f"{i.channels}x{i.image_size}x{i.image_size}" if i.modality == "image"
                  else f"{len(i.feature_names)} features"),
    } for i in infos.values()])


def class_counts(info: Any, dataset: Any | None) -> dict[str, dict[str, int]]:
    """Samples per class for each split: from the metadata, else counted from the labels."""
    counts = {}
    for split in ("train", "val", "test"):
        known = info.class_counts(split)
        if not known and dataset is not None and dataset.size(split):
            bins = np.bincount(dataset.labels(split), minlength=len(info.classes))
            known = dict(zip(info.classes, (int(b) for b in bins), strict=False))
        counts[split] = known
    return counts


def render_overview(info: Any) -> None:
    c = st.columns(5)
    c[0].metric("Modality", info.modality)
    c[1].metric("Classes", len(info.classes))
    for col, split in zip(c[2:], ("train", "val", "test"), strict=True):
        col.metric(split.capitalize(), info.split_counts.get(split, 0))
    if info.description:
        st.caption(plain(info.description))
    shown = ", ".join(info.classes[:30]) + (" ..." if len(info.classes) > 30 else "")
    st.caption(f"Classes: {plain(shown)}")


def render_distribution(info: Any, dataset: Any | None) -> None:
    st.plotly_chart(class_distribution_figure(class_counts(info, dataset)),
                    key="data_distribution")


def thumbnail(image: Any) -> Any:
    from PIL import Image

    if max(image.size) >= THUMB:
        image = image.copy()
        image.thumbnail((THUMB * 2, THUMB * 2))
        return image
    scale = max(1, THUMB // max(image.size))
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def render_image_grid(info: Any, dataset: Any, split: str = "train",
                      per_class: int = SAMPLES_PER_CLASS) -> None:
    """A row of sample images for each class (unreadable images are skipped and counted)."""
    labels = dataset.labels(split)
    skipped = 0
    for k, name in enumerate(info.classes[:20]):
        positions = np.flatnonzero(labels == k)[:per_class]
        images = []
        for i in positions:
            try:
                images.append(thumbnail(dataset.raw(split, int(i))))
            except UserError:
                skipped += 1
        label_col, grid = st.columns([1, 6])
        label_col.markdown(f"**{plain(name)}**")
        if images:
            grid.image(images, width=THUMB)
        else:
            grid.caption("no samples in this split")
    if len(info.classes) > 20:
        st.caption(f"... and {len(info.classes) - 20} more classes.")
    if skipped:
        st.warning(f"{skipped} sample(s) could not be read and were skipped.")


def render_table_rows(info: Any, dataset: Any, split: str = "train", rows: int = 20) -> None:
    n = min(rows, dataset.size(split))
    data = np.stack([dataset.raw(split, i) for i in range(n)]) if n else np.zeros((0, 0))
    frame = pd.DataFrame(data, columns=info.feature_names if n else None)
    labels = dataset.labels(split)[:n]
    frame.insert(0, info.target or "label", [info.classes[k] for k in labels])
    st.dataframe(frame, hide_index=True, width="stretch", key="data_rows")
    st.caption(f"The first {n} of {dataset.size(split)} {split} rows.")


def render_augmentation_preview(info: Any, dataset: Any) -> None:
    """The same image under random draws of the chosen augmentations (on demand: this is the
    one place the Data page needs torch, so it is imported only when asked for)."""
    from core.config import AUGMENTATIONS

    with st.form("data_aug_form", border=False):
        c = st.columns([3, 1, 1])
        augment = c[0].multiselect("Augmentations", AUGMENTATIONS, default=list(AUGMENTATIONS),
                                   key="data_aug", help="The training-only random transforms.")
        limit = max(0, dataset.size("train") - 1)
        index = c[1].number_input("Sample", 0, limit, 0, key="data_aug_index",
                                  help="Position of the image in the train split.")
        seed = c[2].number_input("Seed", 0, 2**31 - 1, 0, key="data_aug_seed")
        upload = st.file_uploader("Or your own image", type=["png", "jpg", "jpeg", "bmp", "gif",
                                                              "webp", "tif", "tiff"],
                                  key="data_aug_upload")
        go = st.form_submit_button("Preview", icon=":material/visibility:")
    if not go:
        return
    try:
        from core.data import open_image, preview_augmentations

        image = open_image(upload.getvalue()) if upload else dataset.raw("train", int(index))
        with st.spinner("Drawing augmentations..."):
            images = preview_augmentations(state.workspace(), info, image, augment, n=8,
                                           seed=int(seed))
    except UserError as exc:
        st.error(str(exc))
        return
    st.image([thumbnail(image)], caption=["original"], width=THUMB * 2)
    st.image([thumbnail(i) for i in images], width=THUMB * 2,
             caption=[f"draw {k + 1}" for k in range(len(images))])


# -- imports -------------------------------------------------------------------------------------


def suggest_name(filename: str, taken: set[str]) -> str:
    """A valid, unused dataset name from an upload's file name (``My Cats.zip`` -> ``my-cats``)."""
    stem = re.sub(r"[^a-z0-9_-]+", "-", Path(filename).stem.lower()).strip("-")[:60] or "dataset"
    name, k = stem, 2
    while name in taken:
        name, k = f"{stem}-{k}", k + 1
    return name


def csv_columns(data: bytes) -> list[str]:
    """The header of an uploaded CSV (best effort: empty when it cannot be read)."""
    import csv
    import io

    try:
        text = data[:65536].decode("utf-8-sig", errors="strict")
        header = next(csv.reader(io.StringIO(text)), [])
    except (UnicodeDecodeError, csv.Error):
        return []
    return [c.strip() for c in header if c.strip()]


def guess_target(columns: list[str]) -> str:
    lowered = {c.lower(): c for c in columns}
    for name in ("label", "target", "class", "y", "species", "diagnosis"):
        if name in lowered:
            return lowered[name]
    return columns[-1] if columns else ""


def import_upload(ws: Workspace, name: str, filename: str, data: bytes,
                  target: str | None = None, progress: Callable | None = None) -> Any:
    """Import uploaded bytes: they go to a temp folder outside the workspace, which is removed
    whatever happens; ``core`` validates the file before anything is written to the workspace."""
    from core.data import import_dataset

    suffix = Path(filename).suffix.lower() if Path(filename).suffix else ".bin"
    with tempfile.TemporaryDirectory(prefix="lab2market-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        return import_dataset(ws, name, path, target=target, progress=progress)


def render_new_dataset(make: Callable[[ProgressFn], Any], text: str, failed: str,
                       made: Callable[[Any], str],
                       status: Callable[[str], str] | None = None) -> None:
    """Make a dataset (an import, a new version) in the page under a progress bar reading
    ``text`` (or ``status(message)`` as it goes); then select it on the Data page and say
    ``made(info)`` there, or say ``failed: why`` if the user's request was refused.

    ``make(progress)`` returns the new dataset's ``DatasetInfo``."""
    bar = st.progress(0.0, text=text)

    def progress(done: int, total: int, message: str = "") -> None:
        bar.progress(min(1.0, done / total) if total else 0.0,
                     text=status(message) if status else text)

    try:
        info = make(progress)
    except UserError as exc:
        bar.empty()
        st.error(f"{failed}: {exc}")
        return
    state.forget_datasets()
    st.session_state["data_select_next"] = info.name
    state.flash(made(info))
    st.rerun()
