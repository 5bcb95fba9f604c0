"""Audio file resolution, confined to allowed roots (Range requests are Starlette's FileResponse)."""

from __future__ import annotations

import logging
import mimetypes
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
