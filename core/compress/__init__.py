"""Compression: pruned and distilled runs, and the variants table that compares them.

Importing this package does not import torch: ``launch`` (queue a pruned or distilled run) and
``variants`` (the table, read from the store and a cached measurement) are torch-free at import;
``prune``, ``architecture`` and ``finetune`` (the pruned run's trainer) import torch.
"""

from core.compress.launch import (
    distilled_config,
    launch_distill,
    launch_prune,
    pruned_config,
    teacher_data,
)

__all__ = ["distilled_config", "launch_distill", "launch_prune", "pruned_config", "teacher_data"]
