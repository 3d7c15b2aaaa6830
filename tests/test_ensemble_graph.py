"""An ensemble as one network: the graph against the Python ensemble, its ONNX export (one graph,
int8, served by the usual runtime), and Explain on it (LIME/SHAP on the combination, Grad-CAM
and IG per member), from the CLI and on the Explain and Deploy pages.

Two weak digits runs (one epoch, different seeds) and one at 12 x 12 are shared by the module.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import ROOT, assert_clean, free_port, open_page, train_run
from test_serve import start, stop, wait_healthy

from core.analyze.ensemble import create_ensemble
from core.data import load_dataset
from core.models.loaded import load_run


@pytest.fixture(scope="module")
def members(ws) -> list[str]:
    """Digits runs with seeds 0 and 1 (conftest's ``resized`` and ``ensembles`` build on them)."""
    return [train_run(ws, train={"seed": seed}) for seed in (0, 1)]


def png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_the_graph_combines_like_the_python_ensemble_for_every_method(ws, ensembles):
    import torch

    raws = [load_dataset(ws, "digits").raw("test", i) for i in range(64)]
    for method, run_id in ensembles.items():
        ens = load_run(ws, run_id)
        x = torch.stack([ens.preprocess(r) for r in raws])
        graph = torch.softmax(ens.model(x), dim=1).detach().numpy()
        np.testing.assert_allclose(graph, ens.predict_raw(raws), atol=1e-5, err_msg=method)


def test_one_onnx_graph_agrees_with_the_python_ensemble_within_1e_4(ws, ensembles, tmp_path):
    from core.deploy.convert import ort_logits, ort_session, to_onnx

    ens = load_run(ws, ensembles["weighted"])
    raws = [load_dataset(ws, "digits").raw("test", i) for i in range(100)]
    x = np.stack([ens.preprocess(r).numpy() for r in raws])
    to_onnx(ens.model, ens.preprocess(raws[0])[None], tmp_path / "ensemble.onnx")
    logits = ort_logits(ort_session(tmp_path / "ensemble.onnx"), x)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert np.abs(probs - ens.predict_raw(raws)).max() <= 1e-4


def test_members_of_other_sizes_are_resized_inside_the_graph(ws, members, resized):
    from core.deploy.convert import torch_logits
    from core.deploy.ensemble_export import python_parity

    ens = load_run(ws, create_ensemble(ws, [members[0], resized], "soft").id)
    # digits images are 8 x 8: the 12 x 12 member is upscaled in the graph from the pixels
    assert ens.image_size == 8 and ens.preprocess(load_dataset(ws, "digits").raw("test", 0)
                                                  ).shape == (1, 8, 8)
    check = python_parity(ens, lambda x: torch_logits(ens.model, x), "test")
    assert check["exact"] is False and check["samples"] == 64
    assert check["max_abs_diff_probability"] < 0.05 and check["top1_agreement"] >= 0.95


def test_int8_export_is_one_graph_checked_and_served(ws, members, ensembles):
    from core.deploy.export import export_run

    run_id = ensembles["stacking"]
    manifest = export_run(ws, run_id, "onnx", quantize="int8", latency_budget_s=0.2)
    check = manifest["checks"]["ensemble_vs_python"]  # the fp32 graph, before quantizing
    assert check["exact"] and check["passed"] and check["max_abs_diff_probability"] <= 1e-4
    assert manifest["model"] == "ensemble" and manifest["precision"] == "int8"
    assert [m["run_id"] for m in manifest["ensemble"]["members"]] == members
    assert sorted(p.name for p in Path(manifest["path"]).glob("*.onnx")) == ["model.int8.onnx"]
    assert "ensemble (stacking) of" in (Path(manifest["path"]) / "model_card.md").read_text()

    port, log = free_port(), ws.home / "ensemble-server.log"
    proc = start([sys.executable, "-m", "core", "serve", run_id, "--bundle", "onnx-int8",
                  "--home", str(ws.home), "--port", str(port)], ROOT,
                 {**os.environ, "PYTHONPATH": str(ROOT)}, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        ens, dataset = load_run(ws, run_id), load_dataset(ws, "digits")
        agree = 0
        for i in range(8):
            img = dataset.raw("test", i)
            r = httpx.post(f"{url}/predict", files={"file": ("x.png", png(img), "image/png")})
            assert r.status_code == 200, r.text
            top = r.json()["predictions"][0]
            assert 0 < top["probability"] <= 1
            agree += top["index"] == int(ens.predict_raw([img])[0].argmax())
        assert agree >= 7  # int8: the top class of the Python ensemble, bar a near tie
    finally:
        stop(proc)


def explain_cli(ws, *args: str, capsys) -> tuple[int, dict | str]:
    from core.cli.main import main

    code = main(["explain", *args, "--json", "--home", str(ws.home)])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else captured.err


def test_explain_gradcam_per_member_and_lime_on_the_combination(ws, members, ensembles,
                                                                 tmp_path, capsys):
    run_id = ensembles["soft"]
    path = tmp_path / "seven.png"
    path.write_bytes(png(load_dataset(ws, "digits").raw("test", 7)))
    code, out = explain_cli(ws, run_id, str(path), "--method", "gradcam,lime",
                            "--param", "lime.num_samples=50", capsys=capsys)
    assert code == 0, out
    found = out["explanations"]
    predicted = int(load_run(ws, run_id).predict_raw(
        [load_dataset(ws, "digits").raw("test", 7)])[0].argmax())
    assert [(e["method"], e["run_id"]) for e in found] == [
        ("gradcam", members[0]), ("gradcam", members[1]), ("lime", run_id)]
    assert {e["target"] for e in found} == {predicted}  # the ensemble's class, for every map
    assert all(e["sanity"] and e["deletion"] for e in found)

    code, out = explain_cli(ws, run_id, str(path), "--method", "ig", "--member", members[1],
                            "--param", "n_steps=8", capsys=capsys)
    assert code == 0 and (out["method"], out["run_id"]) == ("ig", members[1])
    code, err = explain_cli(ws, run_id, str(path), "--method", "lime", "--member", members[0],
                            capsys=capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: --member applies to")


def test_the_explain_page_titles_each_members_map(ws, members, ensembles, capsys):
    run_id = ensembles["soft"]
    at = open_page("pages/explain.py", active_run=run_id)  # saves the dataset example
    saved = sorted((ws.run_dir(run_id) / "explain" / "inputs").glob("*.png"))
    assert len(saved) == 1
    code, out = explain_cli(ws, run_id, str(saved[0]), "--method", "gradcam", capsys=capsys)
    assert code == 0, out
    at = open_page("pages/explain.py", active_run=run_id)
    assert_clean(at)
    titles = [m.value for m in at.markdown if "Grad-CAM" in m.value]
    assert len(titles) == 2 and all(f"member {m}" in t for m, t in zip(members, titles,
                                                                       strict=True))


def test_the_deploy_page_offers_the_ensemble(ws, ensembles):
    at = open_page("pages/deploy.py", active_run=ensembles["soft"])
    assert_clean(at)
    assert at.button(key="deploy_export") is not None
