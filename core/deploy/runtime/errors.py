"""What can go wrong on the serving side, as plain exceptions (the project maps them onto its
``core.errors.UserError`` classes at its edge; a bundle answers them over HTTP)."""

from __future__ import annotations


class BundleError(Exception):
    """The folder is not a bundle this project exported, or a file changed since the export."""


class InputError(Exception):
    """A request's payload cannot be used (answered 422 with this message)."""


class ImageError(InputError):
    """Bytes that are not a usable image: not an allowed format, too many pixels, corrupt."""


class DamagedImageError(ImageError):
    """A file of an allowed format whose content is damaged, e.g. a truncated JPEG."""


class SettingsError(ValueError):
    """A server setting out of range, or a token file that cannot be read."""
