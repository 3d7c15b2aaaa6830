"""The global options (--home, --json, --store, --executor) work before and after every command,
at every nesting level: argparse must never let a sub-command's default undo an outer option
(``datasets --home X list`` once silently listed ./workspace).

Each registered command is parsed in every position, then run for real (``main([...])``) on a
workspace given only by ``--home``, with ``$LAB2MARKET_HOME`` and ./workspace pointing at decoys
that must stay untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core.cli.main import build_parser, command_keys, main

# The arguments each command needs besides its words; RUN, CSV and NAME are filled in per test.
SAMPLES: dict[str, list[str]] = {
    "datasets list": [],
    "datasets import": ["NAME", "--from", "CSV", "--target", "label"],
    "datasets health": ["tiny"],
    "datasets fix": ["tiny", "--drop-columns", "c", "--as", "NAME"],
    "models": [],
    "train": ["--create-only", "--dataset", "tiny", "--epochs", "1"],
    "runs": [],
    "status": ["RUN"],
    "cancel": ["RUN"],
    "delete": ["RUN"],
    "resume": ["RUN"],
    "_job": ["RUN"],
    "jobs": ["--all"],
    "queue": [],
    "evaluate": ["RUN"],
    "predict": ["RUN", "CSV"],
    "ensemble": ["RUN", "RUN"],
    "cv-final": ["RUN"],
    "explain": ["RUN", "CSV", "--method", "nope"],
    "export": ["RUN"],
    "bench": ["RUN"],
    "bundles": ["RUN"],
    "serve": ["RUN", "--port", "0"],
    "prune": ["RUN", "--amount", "0.5", "--unstructured"],
    "distill": ["--teacher", "RUN", "--model", "smallcnn"],
    "variants": ["RUN"],
    "lr-find": ["--dataset", "tiny", "--steps", "10"],
    "batch-find": ["--dataset", "tiny", "--max-batch", "16"],
    "trackers": [],
    "store info": [],
    "store migrate": ["--to", "W"],  # not a URL: refused in one line, nothing copied
    "executor": ["local"],
    "runs export": ["RUN", "--to", "tensorboard", "TB"],
    "tune": ["--dataset", "tiny", "--param", "nope=choice:a"],  # refused once tiny is found
    "studies": [],
    "study": ["RUN"],
    "promote": ["RUN"],
    "_tune": ["RUN"],
}
KEYS = command_keys(build_parser())


def placements(words: list[str], rest: list[str], globals_: list[str]) -> dict[str, list[str]]:
    """The command line with the global options before it, after it, split around it and,
    for a nested command, between its words."""
    home, flag = globals_[:2], globals_[2:]
    found = {
        "before": [*globals_, *words, *rest],
        "after": [*words, *rest, *globals_],
        "split": [*home, *words, *rest, *flag],
    }
    for cut in range(1, len(words)):
        found[f"inside-{cut}"] = [*words[:cut], *globals_, *words[cut:], *rest]
    return found


def cases() -> list:
    return [pytest.param(key, where, id=f"{key}-{where}") for key, words in KEYS.items()
            for where in placements(words, SAMPLES.get(key, []), ["--home", "W", "--json"])]


def test_every_command_has_a_sample():
    # A new command must be added to SAMPLES, and so to both tests below.
    assert set(SAMPLES) == set(KEYS)


@pytest.mark.parametrize(("key", "where"), cases())
def test_global_options_parse_anywhere(key: str, where: str):
    words = KEYS[key]
    argv = placements(words, SAMPLES[key], ["--home", "W", "--json", "--executor", "local"])
    args = build_parser().parse_args(argv[where])
    assert (args.command_key, args.home, args.json, args.executor) == (key, "W", True, "local")


def test_the_innermost_home_wins_and_defaults_stay_outside():
    parser = build_parser()
    args = parser.parse_args(["--home", "A", "datasets", "--home", "B", "list"])
    assert args.home == "B"
    args = parser.parse_args(["datasets", "list"])
    assert (args.home, args.json, args.store, args.executor) == (None, False, None, None)


# -- for real -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small 3-class CSV (60 rows) to import."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("csv") / "tiny.csv"
    rows = [f"{a:.3f},{b:.3f},{c:.3f},k{i % 3}"
            for i, (a, b, c) in enumerate(rng.normal(size=(60, 3)))]
    path.write_text("a,b,c,label\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, table: Path) -> Path:
    """A workspace with the ``tiny`` dataset, which no other workspace has."""
    path = tmp_path_factory.mktemp("real")
    assert main(["datasets", "import", "tiny", "--from", str(table), "--target", "label",
                 "--home", str(path)]) == 0
    return path


@pytest.fixture
def decoys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Where a command that ignored --home would write: $LAB2MARKET_HOME, else ./workspace."""
    env, cwd = tmp_path / "decoy-env", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("LAB2MARKET_HOME", str(env))
    monkeypatch.chdir(cwd)
    return [env, cwd / "workspace"]


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def new_run(home: Path, capsys: pytest.CaptureFixture) -> str:
    code, out, _ = run(["train", "--create-only", "--dataset", "tiny", "--epochs", "1",
                        "--home", str(home), "--json"], capsys)
    assert code == 0
    return json.loads(out)["run_id"]


def ok(check: Callable[[dict], bool]) -> Callable[[int, str, str], None]:
    """The command succeeded and printed JSON that ``check`` accepts."""
    def verify(code: int, out: str, err: str) -> None:
        assert code == 0, err
        assert check(json.loads(out)), out
    return verify


def found_the_run(code: int, out: str, err: str) -> None:
    """The command found the run (it exists only in the --home workspace), whatever it then
    made of a run with no checkpoint yet."""
    assert code in (0, 2), err
    assert "No run" not in err, err


def refused_without_checkpoint(run_id: str) -> Callable[[int, str, str], None]:
    """The command found the run (only the --home workspace has it) and refused it, one line,
    for having no checkpoint yet."""
    def verify(code: int, out: str, err: str) -> None:
        assert code == 2 and f"Run {run_id} has no checkpoint" in err, err
    return verify


EXPECT: dict[str, Callable[..., Callable[[int, str, str], None]]] = {
    "datasets list": lambda run_id, home: ok(
        lambda o: "tiny" in {d["name"] for d in o["datasets"]}),
    "datasets import": lambda run_id, home: ok(
        lambda o: (home / "datasets" / o["name"]).is_dir()),
    "models": lambda run_id, home: ok(lambda o: len(o["models"]) > 0),
    "train": lambda run_id, home: ok(lambda o: (home / "runs" / o["run_id"]).is_dir()),
    "runs": lambda run_id, home: ok(lambda o: run_id in {r["run_id"] for r in o["runs"]}),
    "status": lambda run_id, home: ok(lambda o: o["run_id"] == run_id),
    "cancel": lambda run_id, home: ok(lambda o: o["status"] == "cancelled"),
    "delete": lambda run_id, home: ok(
        lambda o: o["deleted"] == run_id and not (home / "runs" / run_id).exists()),
    "_job": lambda run_id, home: lambda code, out, err: None,  # checked by the status after
    "jobs": lambda run_id, home: ok(lambda o: isinstance(o["jobs"], list)),
    "queue": lambda run_id, home: ok(lambda o: o["max_jobs"] >= 1 and o["running"] == []),
    "bundles": lambda run_id, home: ok(lambda o: o["bundles"] == []),
    "ensemble": lambda run_id, home: refused_without_checkpoint(run_id),
    "tune": lambda run_id, home: lambda code, out, err: (
        code == 2 and "not a tunable config field" in err) or pytest.fail(err),
    "studies": lambda run_id, home: ok(lambda o: o["studies"] == []),
}


@pytest.mark.parametrize(("key", "where"), cases())
def test_global_options_are_honoured(key: str, where: str, workspace: Path, table: Path,
                                     decoys: list[Path], capsys: pytest.CaptureFixture):
    run_id = new_run(workspace, capsys)
    if key == "delete":  # only a finished run can be deleted
        assert run(["cancel", run_id, "--home", str(workspace)], capsys)[0] == 0
    fill = {"RUN": run_id, "CSV": str(table), "W": str(workspace), "NAME": f"copy-{where}"}
    argv = [fill.get(a, a) for a in placements(
        KEYS[key], SAMPLES[key], ["--home", "W", "--json"])[where]]

    code, out, err = run(argv, capsys)

    EXPECT.get(key, lambda run_id, home: found_the_run)(run_id, workspace)(code, out, err)
    if key == "_job":
        assert code == 0, err
        status = json.loads(run(["status", run_id, "--home", str(workspace), "--json"],
                                capsys)[1])
        assert status["status"] == "completed"
    assert not [d for d in decoys if d.exists()], f"{argv} wrote outside --home"
