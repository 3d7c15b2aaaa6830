"""Safe ZIP extraction: every entry is checked before a single byte is written.

Refused: absolute paths, ``..`` components, drive letters and backslashes, symlinks, encrypted
entries, duplicate names (also after case folding and Unicode normalisation), too many entries,
suspicious compression ratios. The bytes actually written are counted while streaming, so a
lying header cannot get past ``max_bytes``.
"""

from __future__ import annotations

import logging
import re
import stat
import unicodedata
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from core.errors import InvalidArchive

logger = logging.getLogger(__name__)

MAX_ENTRIES = 20_000
MAX_BYTES = 2 * 1024**3
MAX_RATIO = 200
# Ratios of small entries say nothing about a bomb (a flat-colour BMP deflates 500x); a bomb
# has to be big to hurt, so ratios are only judged for entries (and totals) above this size.
RATIO_MIN_BYTES = 1024**2
JUNK_PREFIXES = ("__MACOSX/",)  # macOS resource forks, never data
_CHUNK = 1024**2
_DRIVE = re.compile(r"^[A-Za-z]:")

Progress = Callable[[int, int], None]


def safe_extract(
    source: Path,
    dest: Path,
    *,
    max_entries: int = MAX_ENTRIES,
    max_bytes: int = MAX_BYTES,
    max_ratio: float = MAX_RATIO,
    ratio_min_bytes: int = RATIO_MIN_BYTES,
    progress: Progress | None = None,
) -> int:
    """Check every entry of the ZIP ``source``, then extract it into the empty folder ``dest``.

    Returns the bytes written. Raises ``InvalidArchive`` with the reason; on failure ``dest`` may
    hold partial output, which the caller (who created it) removes.
    """
    source = Path(source)
    with _open_zip(source) as archive:
        entries = check_entries(
            archive.infolist(),
            max_entries=max_entries,
            max_bytes=max_bytes,
            max_ratio=max_ratio,
            ratio_min_bytes=ratio_min_bytes,
        )
        written = 0
        for done, (info, parts) in enumerate(entries, start=1):
            written += _extract_one(archive, info, dest.joinpath(*parts), max_bytes - written)
            if progress:
                progress(done, len(entries))
    logger.info("Extracted %d entries (%d bytes) from %s", len(entries), written, source.name)
    return written


def _open_zip(source: Path) -> zipfile.ZipFile:
    if not source.is_file():
        raise InvalidArchive(f"{source} is not a file.")
    if source.stat().st_size == 0:
        raise InvalidArchive(f"{source.name} is empty (0 bytes): upload a .zip of class folders.")
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise InvalidArchive(f"{source.name} is not a valid ZIP archive ({exc}).") from None


def check_entries(
    infos: list[zipfile.ZipInfo],
    *,
    max_entries: int = MAX_ENTRIES,
    max_bytes: int = MAX_BYTES,
    max_ratio: float = MAX_RATIO,
    ratio_min_bytes: int = RATIO_MIN_BYTES,
) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """Validate all entries; return the files to extract with their safe path components."""
    if len(infos) > max_entries:
        raise InvalidArchive(
            f"The archive has {len(infos):,} entries; the limit is {max_entries:,}."
        )
    seen: dict[str, str] = {}
    files = []
    declared = compressed = 0
    for info in infos:
        parts = _safe_parts(info)
        key = unicodedata.normalize("NFC", "/".join(parts)).casefold()
        if key in seen:
            raise InvalidArchive(
                f"The archive has duplicate entries {seen[key]!r} and {info.filename!r}."
            )
        seen[key] = info.filename
        if info.is_dir() or info.filename.startswith(JUNK_PREFIXES):
            continue
        _check_ratio(info.filename, info.file_size, info.compress_size, max_ratio, ratio_min_bytes)
        declared += info.file_size
        compressed += info.compress_size
        files.append((info, parts))
    _check_ratio("The archive", declared, compressed, max_ratio, ratio_min_bytes)
    if declared > max_bytes:
        raise InvalidArchive(
            f"The archive expands to {declared:,} bytes; the limit is {max_bytes:,} bytes."
        )
    return files


def _safe_parts(info: zipfile.ZipInfo) -> list[str]:
    name = info.filename
    if "\x00" in name or "\\" in name:
        raise InvalidArchive(f"Refused entry {name!r}: backslashes and NUL bytes are not allowed.")
    if name.startswith("/") or _DRIVE.match(name):
        raise InvalidArchive(f"Refused entry {name!r}: absolute paths are not allowed.")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArchive(f"Refused entry {name!r}: '..' path components are not allowed.")
    if not parts:
        raise InvalidArchive(f"Refused entry {name!r}: empty path.")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InvalidArchive(f"Refused entry {name!r}: symbolic links are not allowed.")
    if info.flag_bits & 0x1:
        raise InvalidArchive(f"Refused entry {name!r}: encrypted entries are not supported.")
    return parts


def _check_ratio(label: str, size: int, packed: int, max_ratio: float, min_bytes: int) -> None:
    if size > min_bytes and size > max_ratio * max(packed, 1):
        raise InvalidArchive(
            f"{label} expands {size / max(packed, 1):,.0f}x ({size:,} bytes from {packed:,}); "
            f"the limit is {max_ratio:,.0f}x. This looks like a ZIP bomb."
        )


def _extract_one(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Stream one entry to ``target``, stopping as soon as it exceeds ``budget`` bytes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with archive.open(info) as src, open(target, "xb") as dst:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > budget:
                    raise InvalidArchive(
                        f"The archive expands past the size limit while extracting "
                        f"{info.filename!r}; refused."
                    )
                dst.write(chunk)
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError) as exc:
        raise InvalidArchive(f"Cannot extract {info.filename!r}: {exc}") from None
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        raise InvalidArchive(
            f"Entry {info.filename!r} clashes with another entry ({exc})."
        ) from None
    return written
