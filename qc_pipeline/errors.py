"""Errors with stable reason codes.

A call that cannot be processed becomes a ``sessions`` row with ``status="failed"``
and one of the reason codes below; the batch goes on.  User-facing setup problems
(bad config, missing model) raise :class:`SetupError` with a message that names the fix.
"""

from __future__ import annotations


class Reason:
    """Reason codes written to ``sessions.error_reason``.  Values are part of the schema."""

    FILE_NOT_FOUND = "file_not_found"
    EMPTY_FILE = "empty_file"
    NOT_AUDIO = "not_audio"              # container/codec could not be opened (e.g. text renamed .wav)
    DECODE_ERROR = "decode_error"        # opened, but decoding failed part-way
    NO_AUDIO_STREAM = "no_audio_stream"
    UNSUPPORTED_CHANNELS = "unsupported_channels"
    TOO_LONG = "too_long"
    TOO_SHORT = "too_short"
    NO_SPEECH = "no_speech"
    BAD_MANIFEST_ROW = "bad_manifest_row"
    BAD_CHAT_SESSION = "bad_chat_session"
    PATH_OUTSIDE_ROOT = "path_outside_root"
    INTERNAL_ERROR = "internal_error"
    NOT_A_FILE = "not_a_file"            # a directory, FIFO, socket or device where a file was expected
    BAD_HEADER = "bad_header"            # header claims far more audio than the file holds (and > max_duration_s)
    INPUT_TOO_LARGE = "input_too_large"  # manifest/chat line or chat session over the reader's limits
    WORKER_CRASHED = "worker_crashed"    # the worker process died (killed, OOM) twice while on this call
    CALL_TIMEOUT = "call_timeout"        # still running after run.call_timeout_s; its worker was killed
    BAD_MANIFEST = "bad_manifest"        # a whole manifest could not be read (listed in the summary, no rows)

    ALL = (
        FILE_NOT_FOUND, EMPTY_FILE, NOT_AUDIO, DECODE_ERROR, NO_AUDIO_STREAM,
        UNSUPPORTED_CHANNELS, TOO_LONG, TOO_SHORT, NO_SPEECH, BAD_MANIFEST_ROW,
        BAD_CHAT_SESSION, PATH_OUTSIDE_ROOT, INTERNAL_ERROR,
        NOT_A_FILE, BAD_HEADER, INPUT_TOO_LARGE, WORKER_CRASHED, CALL_TIMEOUT, BAD_MANIFEST,
    )
    # failures worth another try with ``--retry-failed`` (the default set): the file or the machine
    # may have changed since; other reasons are properties of the input itself
    RETRYABLE = (WORKER_CRASHED, CALL_TIMEOUT, FILE_NOT_FOUND, INTERNAL_ERROR)


class QCError(Exception):
    """Base class for all qc-pipeline errors."""


class CallError(QCError):
    """One call cannot be processed.  Carries a reason code; never stops the batch."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in Reason.ALL:
            raise ValueError(f"unknown reason code {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SetupError(QCError):
    """The run cannot start (bad config, missing model, unwritable output).  Message names the fix."""


class OutputLocked(SetupError):
    """Another run (or a compaction) holds the output folder."""


class ConfigError(SetupError):
    """A configuration value is invalid.  ``key`` is the dotted path of the offending key; ``keys``
    lists every offending key when several problems are reported at once (see :meth:`combine`)."""

    def __init__(self, key: str, message: str, source: str | None = None) -> None:
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {message}")
        self.key = key
        self.keys = [key]

    @classmethod
    def combine(cls, errors: list["ConfigError"]) -> "ConfigError":
        """One error that shows all of ``errors`` (the first one's key is ``key``)."""
        if len(errors) == 1:
            return errors[0]
        combined = cls.__new__(cls)
        SetupError.__init__(combined, f"{len(errors)} problems:\n  " + "\n  ".join(str(e) for e in errors))
        combined.key = errors[0].key
        combined.keys = [k for e in errors for k in e.keys]
        return combined
