"""The torch-free model catalog used by the pages mirrors the real registry exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.catalog import MODEL_MODALITIES, MODELS, default_model, model_choices


def test_catalog_matches_registry() -> None:
    from core.models import list_models

    specs = list_models()
    assert [s.name for s in specs] == [m.name for m in MODELS]
    assert {s.name: tuple(s.modalities) for s in specs} == MODEL_MODALITIES
    assert {s.name: s.pretrained_available for s in specs} == {
        m.name: m.pretrained_available for m in MODELS}
    for modality in ("image", "tabular"):
        assert model_choices(modality) == [s.name for s in list_models(modality)]
        assert default_model(modality) in model_choices(modality)


def test_catalog_does_not_import_torch() -> None:
    code = "import sys, core.catalog; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "False"
