"""What an ensemble's export adds to any export: the graph checked against the Python ensemble.

``core.deploy.export`` exports an ensemble like any run: ``EnsembleRun.model`` is one network
(``core.models.ensemble_graph.EnsembleGraph``: the members as subgraphs, the combiner as tensor
ops), so the bundle holds ONE ONNX graph served by one onnxruntime session, int8 quantization
included. The usual checks compare that graph with its PyTorch form; this one compares it with
the Python ensemble itself (``EnsembleRun.predict_raw``: each member on its own preprocessing of
the raw sample, combined by ``core.analyze.combiners``), on real samples of the checked split:

- members of one input size (and tables): the graph must agree within 1e-4 on the
  probabilities, or the export is refused;
- members of different sizes: a member of another size than the graph's input sees that input
  resized inside the graph instead of the original resized by Pillow, so the two differ a
  little by design; the difference and the top-1 agreement are recorded in the manifest and
  the model card, not refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import ExportFailed, InvalidImage

if TYPE_CHECKING:
    from core.models.ensemble import EnsembleRun

PARITY_SAMPLES = 64
PROBABILITY_TOLERANCE = 1e-4


def describe(ens: EnsembleRun) -> dict[str, Any]:
    """The manifest's ``ensemble`` section: members, method, fitted weights, input sizes."""
    store = ens.ws.store
    members = []
    for loaded, weight in zip(ens.members, ens.combiner["weights"], strict=True):
        run = store.get_run(loaded.run_id)
        members.append({"run_id": loaded.run_id, "name": run.name, "kind": run.kind,
                        "model": loaded.config.model.name, "image_size": loaded.image_size,
                        "weight": weight})
    return {"method": ens.combiner["method"], "members": members,
            "input_size": ens.image_size, "fitted_on": ens.combiner.get("fitted_on"),
            "graph": "one graph: each member a subgraph (resized in the graph to its own input "
                     "size), the combiner as tensor ops"}


def python_parity(ens: EnsembleRun, graph_logits: Callable[[np.ndarray], np.ndarray],
                  split: str, samples: int = PARITY_SAMPLES) -> dict[str, Any]:
    """The graph's probabilities against the Python ensemble's on up to ``samples`` samples of
    ``split`` (evenly spaced, unreadable ones skipped); refused past the tolerance when every
    member shares the input size."""
    import torch

    from core.data import load_dataset

    dataset = load_dataset(ens.ws, ens.info.name)
    n = dataset.size(split)
    raws = []
    for i in np.unique(np.linspace(0, n - 1, min(n, samples)).round().astype(int)):
        try:
            raws.append(dataset.raw(split, int(i)))
        except (InvalidImage, OSError):
            continue
    if ens.info.modality == "tabular":
        x = ens.preprocess.rows(np.stack(raws))
    else:
        x = torch.stack([ens.preprocess(r) for r in raws])
    expected = ens.predict_raw(raws)
    logits = graph_logits(x.numpy().astype(np.float32))
    got = np.exp(logits - logits.max(1, keepdims=True))
    got /= got.sum(1, keepdims=True)
    worst = float(np.abs(got - expected).max())
    exact = ens.shares_preprocess
    result = {"samples": len(raws), "split": split, "max_abs_diff_probability": worst,
              "top1_agreement": float(np.mean(got.argmax(1) == expected.argmax(1))),
              "exact": exact, "tolerance": PROBABILITY_TOLERANCE if exact else None}
    if exact and not worst <= PROBABILITY_TOLERANCE:  # also catches NaN
        raise ExportFailed(f"The exported ensemble graph disagrees with the Python ensemble by "
                           f"{worst:.3g} on the probabilities (tolerance "
                           f"{PROBABILITY_TOLERANCE:g}); the export is refused.")
    result["passed"] = True if exact else None
    if not exact:
        result["note"] = ("members of different input sizes: a member of another size than "
                          "the graph's input sees that input resized inside the graph, not the "
                          "original file resized by Pillow")
    return result


def add_to_manifest(ens: EnsembleRun, manifest: dict[str, Any], checks: dict[str, Any],
                    graph_logits: Callable[[np.ndarray], np.ndarray], split: str) -> None:
    """The ``ensemble`` section and the ``ensemble_vs_python`` check of an exported ensemble
    (``graph_logits``: the fp32 graph's outputs)."""
    manifest["ensemble"] = describe(ens)
    checks["ensemble_vs_python"] = python_parity(ens, graph_logits, split)


def ensemble_check_line(manifest: dict[str, Any], check: dict[str, Any]) -> str:
    """The model card's line on an ensemble: its members, method and the Python parity."""
    section = manifest.get("ensemble", {})
    members = ", ".join(f"{m['run_id']} ({m['model']}, {m['image_size'] or 'table'}, weight "
                        f"{m['weight']:.3f})" for m in section.get("members", []))
    how = (f"within the {check['tolerance']:g} tolerance" if check.get("exact")
           else "not exact by design: " + check.get("note", ""))
    return (f"- ensemble ({section.get('method')}) of {members}, exported as one graph; "
            f"against the Python ensemble on {check['samples']} {check['split']} samples: max "
            f"|difference| of the probabilities {check['max_abs_diff_probability']:.3g}, top-1 "
            f"agreement {100 * check['top1_agreement']:.2f}% ({how})")
