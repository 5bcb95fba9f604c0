"""Strings that Parquet (UTF-8) can always store."""

from __future__ import annotations


def utf8_text(value: str) -> str:
    """Text Parquet can store: undecodable file-name bytes (surrogate escapes) and lone surrogates
    (an emoji cut in half by a chat export) become U+FFFD instead of failing the whole flush."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        try:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")


def utf8_safe(obj):
    """``obj`` (rows: dicts / lists / scalars) with every string made UTF-8-encodable; a new object."""
    if isinstance(obj, str):
        return utf8_text(obj)
    if isinstance(obj, dict):
        return {k: utf8_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [utf8_safe(v) for v in obj]
    return obj
