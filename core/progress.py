"""The one progress-callback type of the engine.

Long work reports ``progress(done, total, message="")``; the caller decides where it goes: a
tqdm bar in the CLI, the job's row in the store for background work (which the pages watch).
"""

from __future__ import annotations

from typing import Protocol


class ProgressFn(Protocol):
    def __call__(self, done: int, total: int, message: str = "") -> None: ...


def no_progress(done: int, total: int, message: str = "") -> None:
    """The progress callback used when the caller gives none."""
