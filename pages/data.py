"""Data: every dataset (built-in and imported), its classes and samples, its health (problems
found and fixed as new versions), imports, augmentations."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.errors import UserError
from ui import state
from ui.components import render_delete_confirmation
from ui.data_views import (
    csv_columns,
    datasets_frame,
    guess_target,
    import_upload,
    render_augmentation_preview,
    render_distribution,
    render_image_grid,
    render_new_dataset,
    render_overview,
    render_table_rows,
    suggest_name,
)
from ui.format import plain
from ui.health_views import render_health
from ui.router import require_router


def render_import_result(run_import, label: str) -> None:
    """Run one import with a progress bar; on success select the new dataset, else say why."""
    render_new_dataset(
        run_import, f"Importing {plain(label)}...", "Import failed",
        lambda info: f"Imported dataset {plain(info.name)}: {info.modality}, "
                     f"{len(info.classes)} classes, {sum(info.split_counts.values())} samples.")


def render_zip_import(taken: set[str]) -> None:
    upload = st.file_uploader("A .zip of an ImageFolder: one folder per class, images inside",
                              type=["zip"], key="data_zip_upload")
    name = st.text_input("Dataset name", key="data_zip_name",
                         placeholder=suggest_name(upload.name, taken) if upload else "my-images",
                         help="Lowercase letters, digits, - and _.")
    if st.button("Import the zip", key="data_zip_import", disabled=upload is None):
        data = upload.getvalue()
        if not data:
            st.error(f"{plain(upload.name)} is empty: upload a .zip with one folder per class.")
            return
        name = name.strip() or suggest_name(upload.name, taken)
        render_import_result(
            lambda p: import_upload(state.workspace(), name, upload.name, data, progress=p), name)


def render_csv_import(taken: set[str]) -> None:
    upload = st.file_uploader("A .csv with a header row: feature columns and a label column",
                              type=["csv"], key="data_csv_upload")
    columns = csv_columns(upload.getvalue()) if upload else []
    c = st.columns(2)
    name = c[0].text_input("Dataset name", key="data_csv_name",
                           placeholder=suggest_name(upload.name, taken) if upload else "my-table")
    target = c[1].text_input("Target column", key="data_csv_target",
                             placeholder=guess_target(columns) or "label",
                             help="The column holding the class of each row.")
    if columns:
        more = " ..." if len(columns) > 50 else ""
        st.caption("Columns: " + plain(", ".join(columns[:50])) + more)
    if st.button("Import the CSV", key="data_csv_import", disabled=upload is None):
        data = upload.getvalue()
        if not data.strip():
            st.error(f"{plain(upload.name)} is empty: upload a CSV with a header row and data "
                     "rows.")
            return
        name = name.strip() or suggest_name(upload.name, taken)
        target = target.strip() or guess_target(columns) or None
        render_import_result(lambda p: import_upload(state.workspace(), name, upload.name, data,
                                                     target=target, progress=p), name)


def render_folder_import() -> None:
    folder = st.text_input("Folder on the server", key="data_folder_path",
                           placeholder="/data/my-images",
                           help="A folder readable by the server, with one sub-folder per class.")
    name = st.text_input("Dataset name", key="data_folder_name", placeholder="my-images")
    if st.button("Import the folder", key="data_folder_import", disabled=not folder.strip()):
        from core.data import import_dataset

        path = Path(folder.strip()).expanduser()
        if not path.is_dir():
            st.error(f"{plain(path)} is not a folder on the server.")
            return
        name = name.strip() or suggest_name(path.name, set())
        ws = state.workspace()
        render_import_result(lambda p: import_dataset(ws, name, path, progress=p), name)


def render_delete(info) -> None:
    if st.button(f"Delete {info.name}", key="data_delete", icon=":material/delete:"):
        st.session_state["data_confirm_delete"] = info.name
    if st.session_state.get("data_confirm_delete") != info.name:
        return

    def delete() -> str:
        from core.data import delete_dataset

        delete_dataset(state.workspace(), info.name)
        state.forget_datasets()
        return f"Deleted dataset {plain(info.name)}."

    render_delete_confirmation(
        "data", f"Delete the imported dataset {plain(info.name)} and its files? Runs trained on it "
                "keep their checkpoints but cannot be evaluated on it any more.", delete)


require_router()
st.title("Data")
state.render_flashes()
infos = state.dataset_infos()
st.table(datasets_frame(infos).set_index("Dataset"))

if st.session_state.get("data_select_next") in infos:
    st.session_state["data_dataset"] = st.session_state.pop("data_select_next")
if st.session_state.get("data_dataset") not in infos:
    st.session_state["data_dataset"] = "digits" if "digits" in infos else next(iter(infos))
selected = st.selectbox("Dataset", list(infos), key="data_dataset")
info = infos[selected]
try:
    dataset = state.load_dataset(info.name, str(state.home()))
except UserError as exc:
    st.error(f"Cannot load {plain(info.name)}: {exc}")
    dataset = None

render_overview(info)
render_distribution(info, dataset)
if dataset is not None:
    tabs = st.tabs(["Samples", "Health", "Augmentation preview"] if info.modality == "image"
                   else ["First rows", "Health"])
    with tabs[0]:
        if info.modality == "image":
            render_image_grid(info, dataset)
        else:
            render_table_rows(info, dataset)
    with tabs[1]:
        render_health(info, dataset)
    if info.modality == "image":
        with tabs[2]:
            render_augmentation_preview(info, dataset)
if not info.builtin:
    render_delete(info)

st.subheader("Import a dataset")
taken = set(infos)
zip_tab, csv_tab, folder_tab = st.tabs(["Upload a zip", "Upload a CSV", "Folder on the server"])
with zip_tab:
    render_zip_import(taken)
with csv_tab:
    render_csv_import(taken)
with folder_tab:
    render_folder_import()
