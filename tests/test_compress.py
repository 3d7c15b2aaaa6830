"""Pruned runs, trained for real on a tiny ``shapes`` set: structured pruning of resnet18 and
mobilenet_v3_small (smaller networks that reload with ``weights_only`` and export to ONNX with
parity), unstructured sparsity, rounds, cancel + resume of a pruned run, the variants table and
the requests a user gets wrong."""

from __future__ import annotations

import pytest
import torch
from compress_support import config, mini_shapes, train_now
from conftest import run_cli

from core.checkpoint import run_checkpoint
from core.compress import launch_prune, pruned_config
from core.compress.architecture import rebuild
from core.config import PruneConfig
from core.errors import CheckpointDamaged, InvalidConfig, InvalidRunState
from core.models.loaded import load_run
from core.train.callbacks import Callback
from core.workspace import Workspace


@pytest.fixture(scope="module")
def mini(ws: Workspace, tmp_path_factory: pytest.TempPathFactory) -> str:
    return mini_shapes(ws, tmp_path_factory.mktemp("minishapes"))


@pytest.fixture(scope="module")
def small_source(ws: Workspace, mini: str) -> str:
    return train_now(ws, config("smallcnn", image_size=16))


def _prune(ws: Workspace, source: str, epochs: int = 1, callbacks: tuple = (),
           **settings) -> str:
    cfg = pruned_config(ws.store, source, PruneConfig(**settings), finetune_epochs=epochs)
    return train_now(ws, cfg, kind="pruned", parent=source, callbacks=callbacks)


def _onnx_parity(ws: Workspace, run_id: str) -> float:
    from core.deploy.convert import ort_logits, ort_session, parity, to_onnx, torch_logits
    from core.deploy.export import EvalData

    loaded = load_run(ws, run_id)
    data = EvalData.of(loaded)
    path = ws.run_dir(run_id) / "parity.onnx"
    to_onnx(loaded.model, torch.from_numpy(data.x[:2]), path)
    session = ort_session(path)
    diffs = parity(lambda x: torch_logits(loaded.model, x), lambda x: ort_logits(session, x),
                   data.x)
    return max(diffs.values())


def test_resnet18_at_half_its_channels_fine_tunes_reloads_and_exports(ws: Workspace, mini: str):
    from core.deploy.export import export_run

    source = train_now(ws, config("resnet18", image_size=32))
    child = _prune(ws, source, amount=0.5, target="channels")
    run = ws.store.get_run(child)
    assert (run.status, run.kind, run.parent_run) == ("completed", "pruned", source)
    stats = run.summary["compress"]
    # Half of every layer's channels: a conv's weights shrink 4x (in and out halve).
    assert 0.2 < stats["params_ratio"] < 0.32 and stats["macs_ratio"] < 0.35
    # The checkpoint is plain tensors and numbers: torch's weights_only loader reads it.
    state = torch.load(run_checkpoint(ws, child), map_location="cpu", weights_only=True)
    assert state["architecture"]["layer1.0.conv1"]["out_channels"] == 32
    loaded = load_run(ws, child)
    assert loaded.model.layer1[0].conv1.out_channels == 32
    assert loaded.model.fc.out_features == 4  # the head keeps its classes
    assert sum(p.numel() for p in loaded.model.parameters()) == stats["params"]
    manifest = export_run(ws, child, "onnx", latency_budget_s=0.2)
    assert manifest["checks"]["onnx_fp32_parity"]["passed"]


def test_mobilenet_v3_small_to_half_its_parameters(ws: Workspace, mini: str):
    source = train_now(ws, config("mobilenet_v3_small", image_size=32))
    child = _prune(ws, source, amount=0.5, target="params")
    stats = ws.store.get_run(child).summary["compress"]
    assert 0.44 <= stats["params_ratio"] <= 0.5, stats
    assert _onnx_parity(ws, child) <= 1e-4


def test_unstructured_pruning_reports_and_keeps_the_asked_sparsity(ws: Workspace,
                                                                   small_source: str):
    child = _prune(ws, small_source, epochs=2, method="unstructured", amount=0.6)
    stats = ws.store.get_run(child).summary["compress"]
    assert stats["sparsity"]["prunable"] == pytest.approx(0.6, abs=0.01)
    # Two epochs of fine-tuning later the zeros are still zeros, in the checkpoint too.
    model = load_run(ws, child).model
    weights = torch.cat([m.weight.flatten() for m in model.features if hasattr(m, "weight")
                         and m.weight.dim() == 4])
    assert float((weights == 0).float().mean()) == pytest.approx(0.6, abs=0.01)
    assert stats["params"] == stats["parent_params"]  # same dense shapes


class _StopAfterFirstEpoch(Callback):
    def on_epoch_end(self, trainer, epoch, metrics) -> None:
        if epoch == 0:
            trainer.request_stop()


def test_pruning_rounds_survive_a_cancel_and_resume(ws: Workspace, small_source: str):
    from core.train import execute_run

    child = _prune(ws, small_source, amount=0.5, steps=2, callbacks=(_StopAfterFirstEpoch(),))
    run = ws.store.get_run(child)
    assert run.status == "cancelled" and run.epoch == 1
    # What `resume` does, in this process: the run is queued again, then trained on.
    assert ws.store.set_status(child, "queued", expect=("cancelled",))
    summary = execute_run(ws, child, resume=True)
    assert summary["status"] == "completed" and summary["epochs_run"] == 2
    stats = ws.store.get_run(child).summary["compress"]
    assert stats["rounds"] == 2
    model = load_run(ws, child).model
    assert [m.out_channels for m in model.features if isinstance(m, torch.nn.Conv2d)] == \
        [16, 32, 64]


def test_variants_table_measures_the_family_and_marks_the_pareto_front(ws: Workspace,
                                                                       small_source: str):
    from core.compress.variants import cached_table, variants

    child = _prune(ws, small_source, amount=0.5)
    table = variants(ws, small_source, budget_s=0.1)
    rows = {r["run_id"]: r for r in table["rows"]}
    assert rows[small_source]["method"] == "source"
    row = rows[child]
    for key in ("params", "macs", "checkpoint_bytes", "onnx_fp32_bytes", "onnx_int8_bytes",
                "latency_b1_ms", "latency_b32_ms", "accuracy", "f1_macro", "params_smaller",
                "accuracy_delta_points", "speedup_b1"):
        assert row.get(key) is not None, key
    assert row["params_smaller"] > 3
    assert any(r["pareto_latency_b1_ms"] for r in table["rows"])
    measured_at = cached_table(ws, small_source)["measured_at"]
    assert variants(ws, small_source)["measured_at"] == measured_at  # nothing new: cached


def test_bad_requests_get_one_line_and_leave_nothing(ws: Workspace, small_source: str):
    store = ws.store
    before = len(store.list_runs(limit=500))
    with pytest.raises(InvalidConfig, match="amount"):
        launch_prune(store, small_source, PruneConfig(amount=1.5))
    with pytest.raises(InvalidConfig, match="steps"):
        launch_prune(store, small_source, PruneConfig(steps=0))
    with pytest.raises(InvalidConfig, match="magnitude"):
        launch_prune(store, small_source, PruneConfig(method="unstructured", importance="bn"))
    unborn = store.create_run(config("smallcnn").to_dict()).id  # queued, no checkpoint
    with pytest.raises(InvalidRunState, match="queued"):
        launch_prune(store, unborn, PruneConfig())
    store.set_status(unborn, "failed", error="test")
    with pytest.raises(InvalidRunState, match="no checkpoint"):
        launch_prune(store, unborn, PruneConfig())
    assert len(store.list_runs(limit=500)) == before + 1
    proc = run_cli("prune", "../../etc", "--amount", "0.5", home=ws.home, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_checkpoint_for_another_network_is_refused_in_one_line():
    from core.models.nets import SmallCNN

    with pytest.raises(CheckpointDamaged, match="unknown layers: layer9"):
        rebuild(SmallCNN(3, 4), {"layer9.conv": {"out_channels": 3}}, {})
    model = SmallCNN(3, 4)
    shrunk = {"features.0.weight": torch.zeros(8, 3, 3, 3)}
    rebuild(model, {"features.0": {"out_channels": 8}}, shrunk)
    assert model.features[0].weight.shape == (8, 3, 3, 3)
