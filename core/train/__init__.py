"""The trainer (loop, callbacks, DDP) and the function that executes a stored run."""

from core.train.run import execute_run

__all__ = ["execute_run"]
