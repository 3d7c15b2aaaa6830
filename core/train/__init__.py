"""The trainer (loop, callbacks, DDP) and the function that executes a stored run.

``execute_run`` is loaded on first use: the package's torch-free modules (``lr_finder``'s figure
and launchers, ``sinks``' settings) must stay importable from a page without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.train.run import execute_run

__all__ = ["execute_run"]


def __getattr__(name: str) -> Any:
    if name == "execute_run":
        from core.train.run import execute_run

        return execute_run
    raise AttributeError(f"module 'core.train' has no attribute {name!r}")
