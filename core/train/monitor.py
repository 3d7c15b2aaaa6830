"""The machine beside the curves: CPU, RAM and GPU use of a training job, and a starvation hint.

``ResourceSampler`` reads the job's process tree with psutil (CPU % summed over the processes,
100 = one core busy; RAM = their resident memory) and every GPU with NVML (nvidia-ml-py):
utilisation, memory used/total, temperature, power. A machine without NVML or a GPU simply has
no ``gpu*`` keys; a reading a GPU does not support is left out; nothing here raises into training.

``ResourceMonitor`` samples on a daemon thread every few seconds (a long step or a validation pass
still gets samples) and the training thread writes what was sampled to the store (and hands it
to the MLflow / TensorBoard sinks) when a batch ends, so the store is only ever touched from one
thread. Keys: ``sys/cpu_percent``, ``sys/ram_mb``, ``gpu{i}/util``, ``gpu{i}/mem_used_mb``,
``gpu{i}/mem_total_mb``, ``gpu{i}/temp_c``, ``gpu{i}/power_w``, at the optimizer step the sample
was taken at.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.train.callbacks import Callback

if TYPE_CHECKING:
    from core.runs.store import Store
    from core.train.trainer import Trainer

log = logging.getLogger(__name__)
Row = tuple[int, str, float]  # (step, key, value)
STARVED_SHARE = 0.3  # of the epoch's training time spent waiting for batches
MIN_EPOCH_S = 1.0  # shorter epochs are too noisy to judge


class ResourceSampler:
    """One call, one reading of the process tree rooted at ``pid`` and of every GPU."""

    def __init__(self, pid: int | None = None):
        import psutil

        self._psutil = psutil
        self.root = psutil.Process(pid or os.getpid())
        self._procs: dict[int, Any] = {}
        self._gpus = _open_gpus()
        self.sample()  # cpu_percent measures from the previous call: prime it

    @property
    def gpu_count(self) -> int:
        return len(self._gpus)

    def sample(self) -> dict[str, float]:
        values = self._process_tree()
        for i, handle in enumerate(self._gpus):
            values.update(_gpu_reading(i, handle))
        return values

    def _process_tree(self) -> dict[str, float]:
        psutil = self._psutil
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return {}
        cpu = ram = 0.0
        alive: dict[int, Any] = {}
        for proc in procs:
            proc = self._procs.get(proc.pid, proc)  # the same object keeps its CPU baseline
            try:
                cpu += proc.cpu_percent(None)
                ram += proc.memory_info().rss
            except psutil.Error:  # a data-loader worker that just exited
                continue
            alive[proc.pid] = proc
        self._procs = alive
        return {"sys/cpu_percent": cpu, "sys/ram_mb": ram / 2**20}


def _open_gpus() -> list[Any]:
    """NVML handles of the GPUs this job may use; [] without NVML or a GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception as exc:  # noqa: BLE001 - no driver, no library, no GPU: all mean "absent"
        log.debug("No GPU readings: %s", exc)
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    indices = range(count)
    if visible and all(p.strip().isdigit() for p in visible.split(",")):
        indices = [int(p) for p in visible.split(",") if int(p) < count]
    return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in indices]


def _gpu_reading(i: int, handle: Any) -> dict[str, float]:
    import pynvml

    reads = {
        "util": lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu,
        "mem_used_mb": lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20,
        "mem_total_mb": lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20,
        "temp_c": lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
        "power_w": lambda: pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
    }
    values = {}
    for name, read in reads.items():
        try:
            values[f"gpu{i}/{name}"] = float(read())
        except pynvml.NVMLError:  # e.g. power on a board that does not report it
            continue
    return values


class ResourceMonitor(Callback):
    """Samples every ``every_s`` seconds on a thread; the training thread stores the samples.

    One reading per optimizer step, the latest (a long validation pass is sampled several times
    at one step), written once that step is over: the store, which keeps one row per (step,
    key), and the ``listeners`` (the MLflow / TensorBoard sinks, which would keep every row)
    then hold the same values.
    """

    def __init__(self, store: Store, run_id: str, every_s: float = 5.0):
        self.store, self.run_id, self.every_s = store, run_id, every_s
        self.listeners: list[Callable[[list[Row]], None]] = []
        self._samples: dict[int, dict[str, float]] = {}  # step -> its latest reading
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Weak: a run that failed (no on_fit_end) must not keep its model alive in a long-lived
        # process (a test runner); the thread ends when the trainer is gone.
        self._trainer: weakref.ref | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        # Under torchrun the recorded pid is the launcher's: its tree holds every rank.
        try:
            pid = self.store.get_run(self.run_id).pid
            sampler = ResourceSampler(pid if pid and _exists(pid) else None)
        except Exception as exc:  # noqa: BLE001 - a monitor never stops a training
            log.warning("Resource monitor off: %s", exc)
            return
        self._trainer = weakref.ref(trainer)
        self.store.update_run(self.run_id, summary={"gpus_seen": sampler.gpu_count})
        self._thread = threading.Thread(target=self._loop, args=(sampler,), daemon=True,
                                        name="resource-monitor")
        self._thread.start()

    def _loop(self, sampler: ResourceSampler) -> None:
        while True:
            try:
                values = sampler.sample()
            except Exception as exc:  # noqa: BLE001
                log.warning("Resource monitor stopped: %s", exc)
                return
            trainer = self._trainer() if self._trainer else None
            if trainer is None:
                return
            with self._lock:  # the step is read under the lock: see _write
                self._samples[trainer.step] = values
            del trainer
            if self._stop.wait(self.every_s):
                return

    def on_batch_end(self, trainer: Trainer, step: int, loss: float | None) -> None:
        if self._samples:  # a dict's truth is one read: cheap enough for every batch
            self._write(trainer.step)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self._write(trainer.step)

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        self.drain()

    def drain(self) -> None:
        """Stop sampling and write every reading held (idempotent: a sink that ends before
        this callback calls it first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._write(None)

    def _write(self, current: int | None) -> None:
        """Write the readings of the steps before ``current`` (None: all). The sampler reads
        the step under the lock, so no reading of a written step can come after this."""
        with self._lock:
            done = [s for s in self._samples if current is None or s < current]
            readings = [(s, self._samples.pop(s)) for s in sorted(done)]
        rows = [(s, k, v) for s, values in readings for k, v in values.items()]
        if rows:
            self.store.log_metrics(self.run_id, rows)
            for listener in self.listeners:
                listener(rows)


def _exists(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid)


class StarvationHint(Callback):
    """Says once per run when the model waits for data: a large share of the epoch spent
    blocked on the loader means more ``--num-workers`` (or a cheaper transform) would help."""

    def __init__(self, store: Store, run_id: str, share: float = STARVED_SHARE):
        self.store, self.run_id, self.share = store, run_id, share
        self.told = False

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        wait = metrics.get("data_wait")
        if self.told or wait is None or metrics.get("epoch_time", 0.0) < MIN_EPOCH_S \
                or wait < self.share:
            return
        self.told = True
        workers = trainer.config.data.num_workers
        message = starvation_message(wait, workers)
        self.store.add_event(self.run_id, "starvation", message, level="warning",
                             data={"data_wait": wait, "num_workers": workers})
        self.store.update_run(self.run_id, summary={"starvation": message})
        log.warning(message)

    def state_dict(self) -> dict[str, Any]:
        return {"told": self.told}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.told = state.get("told", False)


def starvation_message(wait_share: float, num_workers: int) -> str:
    more = max(2, num_workers * 2)
    cores = os.cpu_count() or 1
    return (f"The model waited for data {wait_share:.0%} of the training time: the data "
            f"loader is the bottleneck. Try --num-workers {min(more, cores)} (now "
            f"{num_workers}; this machine has {cores} CPU cores).")
