"""Audio file resolution (confined to allowed roots) and HTTP Range parsing."""

from __future__ import annotations

import logging
import mimetypes
import os
from pathlib import Path
from typing import Optional, Sequence

log = logging.getLogger(__name__)

MIME = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".ogg": "audio/ogg",
        ".opus": "audio/ogg", ".flac": "audio/flac", ".amr": "audio/amr", ".webm": "audio/webm"}


def resolve_audio(source_path: Optional[str], roots: Sequence[Path]) -> Optional[Path]:
    """The real file behind ``source_path`` if it lies under one of ``roots`` (symlinks resolved), else None."""
    if not source_path:
        return None
    try:
        real = Path(source_path).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        log.warning("audio %s not served: cannot resolve (%s)", source_path, exc)
        return None
    if not real.is_file():
        log.warning("audio %s not served: not a regular file", source_path)
        return None
    for root in roots:
        if real.is_relative_to(Path(root).resolve()):
            return real
    log.warning("audio %s not served: resolves to %s, outside the allowed roots %s (add --audio-root)",
                source_path, real, ", ".join(str(r) for r in roots))
    return None


def content_type(path: Path) -> str:
    return MIME.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def parse_range(header: Optional[str], size: int) -> Optional[tuple[int, int]]:
    """Inclusive (start, end) of a single ``bytes=`` range; None = whole file; ValueError = unsatisfiable."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None  # unsupported forms: serve the whole file (allowed by RFC 9110)
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                raise ValueError("empty suffix range")
            return max(0, size - n), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        raise ValueError(f"bad range {header!r}") from None
    if start >= size or end < start:
        raise ValueError(f"range {header!r} outside 0..{size - 1}")
    return start, min(end, size - 1)


def iter_file(path: Path, start: int, length: int, chunk: int = 64 * 1024):
    with open(path, "rb") as fh:
        fh.seek(start)
        left = length
        while left > 0:
            data = fh.read(min(chunk, left))
            if not data:
                break
            left -= len(data)
            yield data


def file_size(path: Path) -> int:
    return os.stat(path).st_size
