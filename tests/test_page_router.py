"""The router (ui/router.py): the one workaround for Streamlit's legacy ``pages/`` mode, pinned.

If a Streamlit upgrade renames or drops ``PagesManager.uses_pages_directory``, the first test
fails and says where to look; the others check that every page goes through the router and that
a page reached alone (a deep link, a reconnecting tab) still gets the app's shell.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import APP_TIMEOUT, ROOT, assert_clean
from streamlit.testing.v1 import AppTest

from ui import router

PAGES = sorted((ROOT / "pages").glob("*.py"))


def test_streamlit_still_has_the_legacy_pages_flag() -> None:
    from streamlit.runtime.pages_manager import PagesManager

    assert router.pages_manager() is PagesManager
    assert hasattr(PagesManager, router.LEGACY_FLAG), (
        "Streamlit renamed or dropped PagesManager.uses_pages_directory: the workaround in "
        "ui/router.py no longer works; find how this Streamlit turns its legacy pages/ mode off.")
    saved = getattr(PagesManager, router.LEGACY_FLAG)
    try:  # what the workaround counters: a pages/ folder beside app.py turns the mode on
        setattr(PagesManager, router.LEGACY_FLAG, None)
        PagesManager(str(ROOT / "app.py"))
        assert getattr(PagesManager, router.LEGACY_FLAG) is True
        assert router.legacy_mode_on()
    finally:
        setattr(PagesManager, router.LEGACY_FLAG, saved)


def test_the_workaround_lives_in_one_place() -> None:
    sources = [ROOT / "app.py", *PAGES, *(ROOT / "ui").glob("*.py")]
    holders = [p.relative_to(ROOT).as_posix() for p in sources
               if router.LEGACY_FLAG in p.read_text() or "PagesManager" in p.read_text()]
    assert holders == ["ui/router.py"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_page_starts_with_the_router(page: Path) -> None:
    """The first statement a page runs (after imports, constants and definitions) is
    ``require_router()``, imported from ui.router."""
    tree = ast.parse(page.read_text())
    imported = {(node.module, alias.name) for node in tree.body
                if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert ("ui.router", "require_router") in imported
    first = next(i for i, node in enumerate(tree.body)
                 if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call))
    assert ast.unparse(tree.body[first]) == "require_router()"
    work_before = [ast.unparse(node) for node in tree.body[:first]
                   if isinstance(node, ast.Assign | ast.AnnAssign)
                   and any(isinstance(n, ast.Call) for n in ast.walk(node))]
    assert not work_before, f"{page.name} runs {work_before} before the router"


def test_a_deep_link_on_a_first_run_reruns_through_the_app(home: Path) -> None:
    """A session whose first run is a page (a tab reconnecting to ``/train``) is rerouted
    through app.py: it gets the sidebar and is marked routed."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=APP_TIMEOUT)
    at.switch_page("pages/data.py")
    at.run()
    assert_clean(at)
    assert [t.value for t in at.title] == ["Data"]
    assert at.session_state[router.ROUTED] is True
    assert f"`{home}`" in [m.value for m in at.sidebar.markdown]


def test_a_page_run_alone_draws_the_shell_once(home: Path) -> None:
    """AppTest turns the legacy mode back on before every run, so after ``switch_page`` each
    run executes the page alone: the router draws the sidebar there, exactly once."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=APP_TIMEOUT).run()
    at.switch_page("pages/data.py").run()
    at.run()
    assert_clean(at)
    assert [m.value for m in at.sidebar.markdown].count(f"`{home}`") == 1
