"""The CLI as a user runs it: real subprocesses, real store, real training."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, run_cli, run_json

# numpy too: every command (a tune, each trial) pays the parser's imports at its start
HEAVY = ("streamlit", "shap", "lime", "captum", "plotly", "onnxruntime", "torch", "numpy",
         "optuna")


def test_help_imports_no_heavy_library():
    code = (
        "import runpy, sys\n"
        "sys.argv = ['core', '--help']\n"
        "try:\n    runpy.run_module('core', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert "train" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_user_error_is_one_line_and_exit_2(home):
    proc = run_cli("train", "--dataset", "nope", home=home, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:") and "digits" in proc.stderr


def test_train_digits_reaches_95_percent_and_is_reproducible(home):
    args = ("train", "--dataset", "digits", "--model", "smallcnn", "--epochs", "10")
    # How long it takes is measured by benchmarks/queue_latency.py; a test asserts behaviour.
    first = run_json(*args, home=home)
    assert first["status"] == "completed" and first["epochs_run"] == 10
    assert first["final"]["val/acc"] >= 0.95, first
    second = run_json(*args, home=home)
    assert second["run_id"] != first["run_id"]
    assert second["final"] == first["final"]
    runs = run_json("runs", home=home)["runs"]
    assert {r["run_id"] for r in runs} == {first["run_id"], second["run_id"]}
    config = json.loads((home / "runs" / first["run_id"] / "config.json").read_text())
    assert config["model"]["name"] == "smallcnn" and config["train"]["epochs"] == 10
    for name in ("last.pt", "best.pt"):
        assert (home / "runs" / first["run_id"] / "checkpoints" / name).is_file()


def test_tabular_default_model_and_status(home):
    out = run_json("train", "--dataset", "iris", "--epochs", "3", "--lr", "0.01", home=home)
    assert out["model"] == "mlp" and out["status"] == "completed"
    status = run_json("status", out["run_id"], home=home)
    assert status["latest"]["epoch"] == 3.0 and "val/acc" in status["latest"]


def test_datasets_list(home):
    names = [d["name"] for d in run_json("datasets", "list", home=home)["datasets"]]
    assert {"digits", "shapes", "iris", "wine", "breast_cancer"} <= set(names)
