"""The shape of ``core/cli``: an explicit list of command modules that import the base, never the
parser; every registered command reachable; the parser built without heavy imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from core.cli.base import COMMANDS
from core.cli.main import COMMAND_MODULES, build_parser, command_keys

CLI = ROOT / "core" / "cli"
HEAVY = ("torch", "torchvision", "sklearn", "pandas", "onnxruntime", "optuna", "shap",
         "lime", "captum", "plotly", "streamlit")


def imported_names(path: Path) -> set[str]:
    """Modules ``path`` imports, at any depth (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_command_modules_never_import_the_parser():
    for path in CLI.glob("*.py"):
        if path.name != "main.py":
            assert "core.cli.main" not in imported_names(path), path.name


def test_every_module_with_commands_is_listed():
    defining = {f"core.cli.{p.stem}" for p in CLI.glob("*.py")
                if "def add_parsers" in p.read_text()}
    assert defining == set(COMMAND_MODULES)


def test_every_registered_command_has_a_parser_and_back():
    assert set(command_keys(build_parser())) == set(COMMANDS)


def test_building_the_parser_imports_nothing_heavy():
    code = ("import sys\nfrom core.cli.main import build_parser\nbuild_parser()\n"
            "build_parser().parse_args(['train', '--epochs', '2'])\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_malformed_store_url_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["runs", "--store", "mysql://x"])
    assert stop.value.code == 2 and "is not a store URL" in capsys.readouterr().err
