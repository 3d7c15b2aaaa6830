"""CSV import checks on real files: tables too small to split, delimiters other than commas,
duplicate column names. A refused import leaves the workspace exactly as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.data import import_dataset, load_dataset
from core.data.splits import MIN_PER_CLASS, split_sizes, stratified_split
from core.errors import InvalidTable
from core.workspace import Workspace


def snapshot(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): (p.stat().st_size if p.is_file() else -1)
            for p in root.rglob("*")}


@pytest.fixture
def refused(home: Path, workspace: Workspace):
    """Import a CSV that must be refused with ``message``; nothing may appear in ``home``."""

    def check(path: Path, message: str, target: str = "kind") -> str:
        before = snapshot(home)
        with pytest.raises(InvalidTable, match=message) as error:
            import_dataset(workspace, "t", path, target=target)
        assert snapshot(home) == before  # not even an empty datasets/ folder
        assert "\n" not in str(error.value)
        return str(error.value)

    return check


def rows(kinds: list[str]) -> str:
    return "x1,x2,kind\n" + "".join(f"{k}.5,{2 * k},{c}\n" for k, c in enumerate(kinds))


def test_the_minimum_follows_the_split_rule() -> None:
    # Derived from stratified_split, not written down: the smallest class seen in every split.
    assert MIN_PER_CLASS == 3
    for n in range(1, 8):
        splits = stratified_split(np.zeros(n, dtype=np.int64))
        assert split_sizes(np.array([n])) == {s: len(idx) for s, idx in splits.items()}
        assert (min(len(idx) for idx in splits.values()) > 0) == (n >= MIN_PER_CLASS)


def test_a_class_per_row_is_refused(tmp_path: Path, refused) -> None:
    path = tmp_path / "ids.csv"
    path.write_text(rows([f"id{k}" for k in range(12)]))
    message = refused(path, "each of the 12 rows has its own 'kind' value")
    assert "validation and test splits would be empty" in message
    assert f"need at least {MIN_PER_CLASS} rows per class" in message


def test_three_rows_are_refused(tmp_path: Path, refused) -> None:
    path = tmp_path / "three.csv"
    path.write_text(rows(["a", "a", "b"]))
    refused(path, r"only 3 rows for 2 classes of 'kind': the test split would be empty; "
                  r"need at least 3 rows per class .*, 6 rows in all\.")


def test_a_class_too_small_for_every_split_is_refused(tmp_path: Path, refused) -> None:
    path = tmp_path / "rare.csv"
    path.write_text(rows(["a"] * 10 + ["b"] * 10 + ["rare"] * 2))
    refused(path, r"1 class of 'kind' has too few rows to appear in every split: 'rare' \(2\)")


def test_the_smallest_table_that_splits_is_accepted(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "small.csv"
    path.write_text(rows(["a", "b"] * MIN_PER_CLASS))
    info = import_dataset(workspace, "small", path, target="kind")
    assert info.split_counts == {"train": 2, "val": 2, "test": 2}
    assert all(min(info.class_counts(s).values()) == 1 for s in ("train", "val", "test"))


@pytest.mark.parametrize("delimiter, name", [(";", "semicolon"), ("\t", "tab")])
def test_other_delimiters_are_detected_and_said(
    workspace: Workspace, tmp_path: Path, delimiter: str, name: str
) -> None:
    # European style: decimal commas inside the values must not be taken for the delimiter.
    lines = ["x1;x2;kind"] + [f"{k};{k * 2};{'ab'[k % 2]}" for k in range(20)]
    path = tmp_path / "semi.csv"
    path.write_text("\n".join(lines).replace(";", delimiter) + "\n")
    info = import_dataset(workspace, "semi", path, target="kind")
    assert info.feature_names == ["x1", "x2"] and info.classes == ["a", "b"]
    assert f"({name}-separated)" in info.description
    assert load_dataset(workspace, "semi").raw("train", 0).shape == (2,)


def test_a_single_column_with_semicolons_gets_a_hint(tmp_path: Path, refused) -> None:
    # Rows that disagree on the number of fields: nothing to detect, so say what to do.
    path = tmp_path / "ragged.csv"
    path.write_text("x1;x2;kind\n1;2\n3;4;a;b;c\n5\n")
    refused(path, "single column 'x1;x2;kind'.*Save it as a comma-separated CSV")


@pytest.mark.parametrize(
    "header, named",
    [
        ("a,b,a,kind", r"'a' \(columns 1, 3\)"),
        ("kind,x,kind", r"'kind' \(columns 1, 3\)"),
        ("a,a,b,b,kind", r"'a' \(columns 1, 2\), 'b' \(columns 3, 4\)"),
    ],
)
def test_duplicate_column_names_are_refused(tmp_path: Path, refused, header, named) -> None:
    width = header.count(",") + 1
    body = "".join(",".join([str(k)] * (width - 1) + ["ab"[k % 2]]) + "\n" for k in range(20))
    path = tmp_path / "dup.csv"
    path.write_text(header + "\n" + body)
    refused(path, f"duplicate column names: {named}. Give every column its own name.")


def test_a_real_column_named_like_a_pandas_rename_is_fine(workspace: Workspace,
                                                          tmp_path: Path) -> None:
    path = tmp_path / "dotted.csv"
    path.write_text("a,a.1,kind\n" + "".join(f"{k},{k},{'ab'[k % 2]}\n" for k in range(20)))
    assert import_dataset(workspace, "dotted", path, target="kind").feature_names == ["a", "a.1"]


def test_a_byte_order_mark_is_not_part_of_the_first_name(workspace: Workspace,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeff".encode() + rows(["a", "b"] * 5).encode())
    assert import_dataset(workspace, "excel", path, target="kind").feature_names == ["x1", "x2"]


def test_not_utf8_is_refused(tmp_path: Path, refused) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("caf\xe9,x,kind\n".encode("latin-1") + b"1,2,a\n" * 10)
    refused(path, "not UTF-8 text")
