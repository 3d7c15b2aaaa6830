"""The machine beside the curves: resource metrics of a run's process tree in the store (GPUs
absent here are absent, not errors), drawn on the Train page; the data-loader starvation hint."""

from __future__ import annotations

import subprocess
import sys

from conftest import open_page, train_run, wait_for

from core.train.callbacks import Callback
from core.train.monitor import ResourceSampler
from core.workspace import Workspace

SMALL = {"data": {"dataset": "wine"}, "model": {"name": "mlp"}}  # fast: 107 training rows


def test_a_runs_resource_metrics_are_in_the_store_and_on_the_page(ws: Workspace):
    run_id = train_run(ws, **SMALL, train={"epochs": 3, "batch_size": 8, "resource_every": 0.2})
    series = ws.store.get_metrics(run_id)
    assert series["sys/ram_mb"] and all(v > 50 for _, v in series["sys/ram_mb"])
    assert all(v >= 0 for _, v in series["sys/cpu_percent"])
    gpus = ResourceSampler().gpu_count
    run = ws.store.get_run(run_id)
    assert run.summary["gpus_seen"] == gpus
    assert any(k.startswith("gpu0/") for k in series) == (gpus > 0)  # absent, not an error

    at = open_page("pages/train.py", active_run=run_id)
    assert any("Machine" in m.value for m in at.markdown)
    if not gpus:
        assert any("GPU: none seen" in c.value for c in at.caption)


def test_the_sampler_reads_the_whole_process_tree():
    sampler = ResourceSampler()
    before = sampler.sample()["sys/ram_mb"]
    child = subprocess.Popen([sys.executable, "-c", "x = bytearray(300 * 2**20); "
                              "x[::4096] = b'1' * len(x[::4096]); print('ready', flush=True); "
                              "import time; time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        grown = wait_for(lambda: sampler.sample()["sys/ram_mb"] - before > 250, timeout=10)
        assert grown
    finally:
        child.kill()
        child.wait()


class SlowLoader:
    """The trainer's own loader, 1.5 s slower per batch: a data pipeline that cannot keep up."""

    def __init__(self, loader):
        self.loader, self.sampler = loader, loader.sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        import time

        for batch in self.loader:
            time.sleep(1.5)
            yield batch


class Starve(Callback):
    def on_fit_start(self, trainer):
        trainer.train_loader = SlowLoader(trainer.train_loader)


def test_a_starved_run_says_so_and_suggests_num_workers(ws: Workspace):
    from core.config import RunConfig
    from core.runs import create_run
    from core.train import execute_run

    fed = train_run(ws, **SMALL, train={"epochs": 1, "batch_size": 8, "resource_every": 0})
    assert ws.store.get_metrics(fed, keys=["data_wait"])["data_wait"][0][1] < 0.3
    assert not ws.store.get_events(fed, kind="starvation")

    raw = RunConfig().to_dict()
    raw.update({k: {**raw[k], **v} for k, v in SMALL.items()})
    raw["train"].update(epochs=1, batch_size=64, resource_every=0)  # 2 batches, 3 s waiting
    run = create_run(ws.store, RunConfig.from_dict(raw))
    assert execute_run(ws, run.id, callbacks=[Starve()])["status"] == "completed"
    hint = ws.store.get_events(run.id, kind="starvation")
    assert len(hint) == 1 and hint[0].level == "warning"
    assert "--num-workers" in hint[0].message and hint[0].data["data_wait"] > 0.3
    at = open_page("pages/train.py", active_run=run.id)
    assert any("--num-workers" in w.value for w in at.warning)
