"""Errors a user can cause. Each message says what to do next.

Pages show them with ``st.error``; the CLI prints the message and exits 2. Anything that is not a
``UserError`` is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Base class of every error caused by input, not by a bug."""

    exit_code = 2


class InvalidConfig(UserError):
    """A configuration value is unknown or out of range."""


class DatasetNotFound(UserError):
    """No built-in or imported dataset has that name."""


class ModelNotFound(UserError):
    """No registered model has that name."""


class InvalidArchive(UserError):
    """An uploaded archive is unsafe, too large or not in the expected layout."""


class InvalidImage(UserError):
    """A file is not an allowed image, is corrupt, or has too many pixels."""


class InvalidTable(UserError):
    """A CSV is unreadable or lacks the expected columns."""


class WeightsNotFound(UserError):
    """A pretrained or user-given weights file is missing or does not fit the model."""


class UnsafeCheckpoint(UserError):
    """A checkpoint holds something other than tensors and primitives; it is refused."""


class RunNotFound(UserError):
    """No run has that id."""


class InvalidRunState(UserError):
    """The run's status does not allow the requested action (e.g. resuming a completed run)."""


class DeviceUnavailable(UserError):
    """The requested device (e.g. ``cuda:0``) does not exist on this machine."""


class ComputeBudgetExceeded(UserError):
    """An explanation ran past its compute budget (time, samples or steps)."""


class ExportFailed(UserError):
    """An export did not pass its checks (ONNX checker, agreement with PyTorch)."""


class InvalidBundle(UserError):
    """An export bundle is missing, was not exported by this project, or changed since."""


class InvalidName(UserError):
    """A run id, dataset or bundle name does not match its pattern or leaves the workspace."""
