"""Every dataset name a user types is checked before a path is built from it: a name that is not
1-64 lowercase letters, digits, '_' or '-' never reaches the filesystem, even when a real dataset
waits at the place it would lead to."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.data import (
    check_fingerprint,
    delete_dataset,
    fingerprint,
    get_info,
    import_dataset,
    list_datasets,
    load_dataset,
)
from core.errors import InvalidName, UserError
from core.workspace import Workspace, dataset_dir

BAD_NAMES = ["", "..", "../evil", "../../evil", "a/b", "/tmp/evil", "Upper", "dot.ted",
             ".hidden", "sp ace", "x" * 65, "nul\x00", "back\\slash"]


def _plant(home: Path, tmp_path: Path, workspace: Workspace) -> Path:
    """A genuine dataset outside the workspace's datasets/ folder, where ``..`` names lead."""
    src = tmp_path / "src.csv"
    src.write_text("x,kind\n" + "".join(f"{k},{'ab'[k % 2]}\n" for k in range(12)))
    import_dataset(workspace, "planted", src, target="kind")
    evil = home / "evil"
    os.replace(home / "datasets" / "planted", evil)
    meta = json.loads((evil / "meta.json").read_text())
    (evil / "meta.json").write_text(json.dumps({**meta, "name": "evil"}))
    return src


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_dataset_names_are_refused_before_any_path(
    home: Path, tmp_path: Path, name: str, workspace: Workspace
) -> None:
    src = _plant(home, tmp_path, workspace)
    before = sorted(p.as_posix() for p in tmp_path.rglob("*"))
    with pytest.raises(InvalidName):
        dataset_dir(home, name)
    with pytest.raises(InvalidName):
        import_dataset(workspace, name, src, target="kind")
    for read in (get_info, load_dataset, delete_dataset, fingerprint):
        with pytest.raises(UserError, match="Unknown dataset|Invalid dataset name"):
            read(workspace, name)
    with pytest.raises(UserError):
        check_fingerprint(workspace, {"classes": ["a", "b"]}, name)
    assert sorted(p.as_posix() for p in tmp_path.rglob("*")) == before
    assert (home / "evil" / "meta.json").is_file()  # reachable by '../evil', never read or moved


def test_links_in_the_datasets_folder_are_not_datasets(home: Path, tmp_path: Path,
                                                       workspace: Workspace) -> None:
    _plant(home, tmp_path, workspace)
    outside = tmp_path / "outside"
    os.replace(home / "evil", outside)
    (home / "datasets" / "link").symlink_to(outside, target_is_directory=True)
    assert [i.name for i in list_datasets(workspace) if not i.builtin] == []
    with pytest.raises(InvalidName, match="outside the workspace|resolves"):
        get_info(workspace, "link")
