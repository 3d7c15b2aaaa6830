"""The train flags come from the config dataclasses: every field has one, each reaches the run's
config; ``--config FILE`` merges under the flags and a bad file is one line and exit 2."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from core.cli.flags import config_from_args
from core.cli.main import build_parser, main
from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.workspace import Workspace

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
RENAMED = {("model", "name"): "--model"}  # the one flag not named after its field

# A valid value other than the default for each field, as typed on the command line, and as
# the config must hold it. Written out by hand so the test does not trust the generator.
VALUES: dict[tuple[str, str], tuple[str, object]] = {
    ("data", "dataset"): ("iris", "iris"),
    ("data", "image_size"): ("32", 32),
    ("data", "augment"): ("flip, crop", ["flip", "crop"]),
    ("data", "num_workers"): ("2", 2),
    ("data", "pin_memory"): ("", True),
    ("data", "cv"): ("5", 5),
    ("data", "fold"): ("2", 2),
    ("data", "train_on_val"): ("", True),
    ("model", "name"): ("mlp", "mlp"),
    ("model", "pretrained"): ("", True),
    ("model", "weights"): ("w.pt", "w.pt"),
    ("model", "freeze_backbone"): ("", True),
    ("model", "dropout"): ("0.3", 0.3),
    ("train", "epochs"): ("3", 3),
    ("train", "batch_size"): ("16", 16),
    ("train", "lr"): ("0.05", 0.05),
    ("train", "optimizer"): ("sgd", "sgd"),
    ("train", "weight_decay"): ("0.01", 0.01),
    ("train", "scheduler"): ("step", "step"),
    ("train", "step_size"): ("2", 2),
    ("train", "gamma"): ("0.5", 0.5),
    ("train", "label_smoothing"): ("0.1", 0.1),
    ("train", "amp"): ("off", "off"),
    ("train", "grad_accum"): ("2", 2),
    ("train", "patience"): ("4", 4),
    ("train", "monitor"): ("val/acc", "val/acc"),
    ("train", "mode"): ("max", "max"),
    ("train", "seed"): ("7", 7),
    ("train", "device"): ("cpu", "cpu"),
    ("train", "nproc"): ("2", 2),
    ("train", "memory_gb"): ("3.5", 3.5),
    ("train", "max_grad_norm"): ("1.5", 1.5),
    ("train", "class_weights"): ("", True),
    ("train", "balanced_sampler"): ("", True),
    ("train", "resource_every"): ("2.5", 2.5),
    ("train", "mlflow"): ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("train", "tensorboard"): ("tb", "tb"),
}
# Flags that are only valid with another one: that one is given too (and may move).
NEEDS: dict[tuple[str, str], tuple[tuple[str, str], str]] = {
    ("data", "fold"): (("data", "cv"), "5")}
FIELDS = [(section, f.name) for section, cls in SECTIONS.items()
          for f in dataclasses.fields(cls)]


def flag(section: str, name: str) -> str:
    return RENAMED.get((section, name), "--" + name.replace("_", "-"))


def train_parser():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["train"]


def test_every_config_field_has_a_flag():
    options = {s for action in train_parser()._actions for s in action.option_strings}
    missing = [flag(*f) for f in FIELDS if flag(*f) not in options]
    assert not missing, f"config fields without a train flag: {missing}"
    assert {"--step-size", "--gamma"} <= options
    assert set(VALUES) == set(FIELDS), "give the new field a value in VALUES"


@pytest.mark.parametrize(("section", "name"), FIELDS, ids=[f"{s}.{n}" for s, n in FIELDS])
def test_each_flag_reaches_the_config(section: str, name: str, home: Path):
    typed, expected = VALUES[(section, name)]
    argv = ["train", flag(section, name)] + ([typed] if typed else [])
    needed = NEEDS.get((section, name))
    if needed:
        argv += [flag(*needed[0]), needed[1]]
    args = build_parser().parse_args(argv)
    with Workspace.open(home) as args.ws:
        config = config_from_args(args).to_dict()
    assert config[section][name] == expected
    default = RunConfig().to_dict()
    moved = {(section, name), *([needed[0]] if needed else [])}
    others = {(s, n): config[s][n] for s, n in FIELDS if (s, n) not in moved}
    # Only that field moved (the model follows the dataset's modality when not given).
    assert {k: v for k, v in others.items() if k != ("model", "name")} == {
        k: default[k[0]][k[1]] for k in others if k != ("model", "name")}


def test_flags_not_given_are_none_and_bools_can_be_turned_off():
    args = build_parser().parse_args(["train"])
    assert all(getattr(args, f"config.{s}.{n}") is None for s, n in FIELDS)
    args = build_parser().parse_args(["train", "--no-pin-memory", "--pretrained"])
    assert getattr(args, "config.data.pin_memory") is False
    assert getattr(args, "config.model.pretrained") is True


def test_an_unknown_augmentation_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["train", "--augment", "flip,warp"])
    assert stop.value.code == 2
    assert "unknown warp" in capsys.readouterr().err


def test_flags_override_the_config_file(home: Path, tmp_path: Path, capsys):
    raw = RunConfig().to_dict()
    raw["model"]["name"] = "mlp"
    raw["data"]["dataset"] = "iris"
    raw["train"].update(epochs=3, lr=0.02)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    assert main(["train", "--create-only", "--config", str(path), "--epochs", "5",
                 "--gamma", "0.3", "--json", "--home", str(home)]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    saved = json.loads((home / "runs" / run_id / "config.json").read_text())
    assert (saved["train"]["epochs"], saved["train"]["lr"], saved["train"]["gamma"]) == (
        5, 0.02, 0.3)
    assert saved["model"]["name"] == "mlp" and saved["data"]["dataset"] == "iris"


BAD_CONFIGS = {
    "missing": (None, "cannot read it (No such file or directory)"),
    "bad-json": ("{oops", "not valid JSON (line 1, column 2)"),
    "not-an-object": ("[1, 2]", "must be a JSON object of sections"),
    "unknown-section": ('{"trainer": {}}', "Unknown config sections: ['trainer']"),
    "unknown-field": ('{"train": {"epochz": 3}}', "Unknown TrainConfig fields: ['epochz']"),
    "wrong-type": ('{"train": {"epochs": "ten"}}', "train.epochs = 'ten' is not an integer"),
    "bad-value": ('{"train": {"epochs": 0}}', "epochs must be >= 1"),
    "not-text": (b"\xff\xfe\x00", "not valid JSON"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_a_bad_config_file_is_one_line_and_exit_2(case: str, home: Path, tmp_path: Path,
                                                   capsys):
    content, message = BAD_CONFIGS[case]
    path = tmp_path / "config.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    code = main(["train", "--config", str(path), "--home", str(home)])  # a traceback raises
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: --config {path}") and message in err
    assert err.count("\n") == 1
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())


def test_a_bad_config_file_from_the_shell(home: Path, tmp_path: Path):
    path = tmp_path / "config.json"
    path.write_text('{"train": {"epochs": 2,}}')
    proc = subprocess.run([sys.executable, "-m", "core", "train", "--config", str(path),
                           "--home", str(home)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --config") and "Traceback" not in proc.stderr
