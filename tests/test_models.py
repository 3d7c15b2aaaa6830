"""Model registry: every model builds, trains a step, and loads weights only from safe files."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from core.config import ModelConfig
from core.errors import InvalidConfig, ModelNotFound, UnsafeCheckpoint, WeightsNotFound
from core.models import (
    adapt_conv_weight,
    classifier_head,
    create_model,
    default_model,
    head_parameter_names,
    list_models,
    pretrained_weights_path,
)

TORCHVISION = [s.name for s in list_models() if s.pretrained_available]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch cache, so the machine's real one is never read."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def image_info(channels: int = 3, size: int = 32, classes: int = 4) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        modality="image",
        classes=[f"c{i}" for i in range(classes)],
        channels=channels,
        image_size=size,
    )


def tabular_info(features: int = 7, classes: int = 3) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        modality="tabular",
        classes=[f"c{i}" for i in range(classes)],
        feature_names=[f"f{i}" for i in range(features)],
    )


def batch_for(info: types.SimpleNamespace, size: int | None = None, n: int = 2) -> torch.Tensor:
    if info.modality == "tabular":
        return torch.randn(n, len(info.feature_names))
    size = size or info.image_size
    return torch.randn(n, info.channels, size, size)


def forward_backward(model: nn.Module, x: torch.Tensor, num_classes: int) -> None:
    model.train()
    logits = model(x)
    assert logits.shape == (x.shape[0], num_classes)
    logits.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


CASES = [
    pytest.param(spec.name, modality, channels, id=f"{spec.name}-{modality}-{channels}")
    for spec in list_models()
    for modality in spec.modalities
    for channels in ((1, 3) if modality == "image" else (0,))
]


@pytest.mark.parametrize(("name", "modality", "channels"), CASES)
def test_forward_backward(name: str, modality: str, channels: int) -> None:
    info = image_info(channels, size=32) if modality == "image" else tabular_info()
    forward_backward(create_model(name, info), batch_for(info), len(info.classes))


@pytest.mark.parametrize("name", [s.name for s in list_models("image")])
def test_runs_on_8x8_digits(name: str) -> None:
    info = image_info(channels=1, size=8, classes=10)
    forward_backward(create_model(name, info), batch_for(info), 10)


def test_mlp_image_size_override() -> None:
    info = image_info(channels=1, size=8)
    model = create_model("mlp", info, image_size=16)
    forward_backward(model, batch_for(info, size=16), len(info.classes))


def test_registry_listing() -> None:
    names = [s.name for s in list_models()]
    assert names[:2] == ["mlp", "smallcnn"]
    assert {"resnet18", "mobilenet_v3_small", "efficientnet_b0"} <= set(TORCHVISION)
    assert [s.name for s in list_models("tabular")] == ["mlp"]
    assert "mlp" in [s.name for s in list_models("image")]


def test_registry_lists_without_importing_torch() -> None:
    """The pages list models from the registry itself: listing must never load torch."""
    code = ("import sys, core.models as m; names = [s.name for s in m.list_models()]; "
            "print('torch' in sys.modules, m.default_model('image'), m.default_model('tabular'), "
            "len(names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.split() == ["False", "smallcnn", "mlp", str(len(list_models()))]


def test_default_model_per_modality() -> None:
    for modality in ("image", "tabular"):
        assert default_model(modality) in [s.name for s in list_models(modality)]
    with pytest.raises(ModelNotFound, match="audio"):
        default_model("audio")


def test_unknown_model() -> None:
    with pytest.raises(ModelNotFound, match="smallcnn"):
        create_model("vit_gigantic", image_info())


def test_modality_not_supported() -> None:
    with pytest.raises(InvalidConfig, match="tabular"):
        create_model("smallcnn", tabular_info())


def test_pretrained_needs_torchvision_model(torch_home: Path) -> None:
    with pytest.raises(InvalidConfig, match="no pretrained"):
        create_model("mlp", tabular_info(), ModelConfig(name="mlp", pretrained=True))


@pytest.mark.parametrize("name", TORCHVISION)
def test_pretrained_missing_file(name: str, torch_home: Path) -> None:
    path = pretrained_weights_path(name)
    assert path.parent == torch_home / "hub" / "checkpoints"
    with pytest.raises(WeightsNotFound) as err:
        create_model(name, image_info(), ModelConfig(name=name, pretrained=True))
    assert str(path) in str(err.value)
    assert "https://download.pytorch.org/models/" in str(err.value)


def _save_torchvision_resnet18(path: Path) -> dict[str, torch.Tensor]:
    from torchvision.models import resnet18

    torch.manual_seed(123)
    state = resnet18(weights=None).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


@pytest.mark.parametrize("channels", [3, 1])
def test_pretrained_loads_cache_file(torch_home: Path, channels: int) -> None:
    path = pretrained_weights_path("resnet18")
    assert path.name == "resnet18-f37072fd.pth"
    saved = _save_torchvision_resnet18(path)
    info = image_info(channels=channels, classes=5)
    model = create_model("resnet18", info, ModelConfig(name="resnet18", pretrained=True))
    state = model.state_dict()
    for key, value in saved.items():
        if key.startswith("fc."):
            continue
        adapted = key == "conv1.weight" and channels != 3
        expected = adapt_conv_weight(value, channels) if adapted else value
        assert torch.equal(state[key], expected), key
    assert classifier_head(model).weight.shape == (5, 512)
    forward_backward(model, batch_for(info), 5)


def _fake_run_checkpoint(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    # A DDP run saves "module."-prefixed keys; loading must strip them.
    model_sd = {f"module.{k}": v for k, v in state.items()}
    torch.save({"format": "lab2market/1", "model": model_sd, "epoch": 3, "classes": ["a"]}, path)
    return state


@pytest.mark.parametrize("name", ["resnet18", "smallcnn"])
def test_weights_from_run_checkpoint(tmp_path: Path, name: str) -> None:
    source = create_model(name, image_info(channels=3, classes=10))
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)  # so loaded tensors cannot equal a fresh init by chance
    saved = _fake_run_checkpoint(tmp_path / "best.pt", source)
    cfg = ModelConfig(name=name, weights=str(tmp_path / "best.pt"))
    info = image_info(channels=1, classes=4)
    model = create_model(name, info, cfg)
    state, head = model.state_dict(), head_parameter_names(model)
    conv = next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)) + ".weight"
    for key, value in saved.items():
        if key in head:
            assert state[key].shape[0] == 4 and not torch.equal(state[key][:4], value[:4])
        elif key == conv:
            assert torch.equal(state[key], adapt_conv_weight(value, 1))
        else:
            assert torch.equal(state[key], value), key
    forward_backward(model, batch_for(info), 4)


def test_weights_torchvision_state_dict(tmp_path: Path) -> None:
    saved = _save_torchvision_resnet18(tmp_path / "r18.pth")
    cfg = ModelConfig(name="resnet18", weights=str(tmp_path / "r18.pth"))
    model = create_model("resnet18", image_info(classes=1000), cfg)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


def test_weights_that_do_not_fit(tmp_path: Path) -> None:
    torch.save(create_model("smallcnn", image_info()).state_dict(), tmp_path / "cnn.pt")
    cfg = ModelConfig(name="resnet18", weights=str(tmp_path / "cnn.pt"))
    with pytest.raises(WeightsNotFound, match="does not fit model resnet18"):
        create_model("resnet18", image_info(), cfg)


def test_weights_missing_file(tmp_path: Path) -> None:
    cfg = ModelConfig(name="smallcnn", weights=str(tmp_path / "nope.pt"))
    with pytest.raises(WeightsNotFound, match="nope.pt"):
        create_model("smallcnn", image_info(), cfg)


@pytest.mark.parametrize(("name", "modality"), [(s.name, s.modalities[0]) for s in list_models()])
def test_freeze_backbone(name: str, modality: str) -> None:
    info = image_info() if modality == "image" else tabular_info()
    model = create_model(name, info, ModelConfig(name=name, freeze_backbone=True))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == head_parameter_names(model)
    assert {n for n, _ in classifier_head(model).named_parameters()} == {"weight", "bias"}
    assert classifier_head(model).out_features == len(info.classes)
    model(batch_for(info)).sum().backward()


class _Malicious:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_weights_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"model": {"fc.weight": _Malicious(marker)}}, tmp_path / "evil.pt")
    cfg = ModelConfig(name="smallcnn", weights=str(tmp_path / "evil.pt"))
    with pytest.raises(UnsafeCheckpoint):
        create_model("smallcnn", image_info(), cfg)
    assert not marker.exists()


@pytest.mark.parametrize("name", [s.name for s in list_models() if s.dropout is not None])
def test_dropout_rate_comes_from_the_config(name: str) -> None:
    info = image_info(channels=3, size=32)
    rates = {m.p for m in create_model(name, info, ModelConfig(name=name, dropout=0.37)).modules()
             if isinstance(m, nn.Dropout)}
    assert rates == {0.37}
    default = {m.p for m in create_model(name, info).modules() if isinstance(m, nn.Dropout)}
    assert default == {next(s for s in list_models() if s.name == name).dropout}


def test_dropout_on_a_model_without_it_is_one_line() -> None:
    with pytest.raises(InvalidConfig, match="has no dropout layer"):
        create_model("resnet18", image_info(), ModelConfig(name="resnet18", dropout=0.2))
