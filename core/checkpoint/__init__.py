"""Checkpoints: writing them atomically with a checksum (``files``), loading them only with
``weights_only``, and saying in one line why one cannot be used (``damage``)."""

from core.checkpoint.damage import damaged, describe_path
from core.checkpoint.files import (
    FORMAT,
    checkpoint_signature,
    checksum_path,
    clean_state_dict,
    file_signature,
    load_checkpoint,
    load_model_state,
    model_state,
    read_checksums,
    remove_temp_files,
    run_checkpoint,
    save_checkpoint,
    verify_checksum,
)

__all__ = [
    "FORMAT", "checkpoint_signature", "checksum_path", "clean_state_dict", "damaged",
    "describe_path", "file_signature", "load_checkpoint", "load_model_state", "model_state",
    "read_checksums", "remove_temp_files", "run_checkpoint", "save_checkpoint", "verify_checksum",
]
