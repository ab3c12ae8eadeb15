"""The project's own error types: every failure a user can cause ends in one of these, with a message
that names the problem (never a traceback from deep inside a library)."""


class LeafCodecError(Exception):
    """Base class; the command line prints ``error: <message>`` and exits with status 2."""


class DataError(LeafCodecError):
    """Missing dataset folder, unreadable image, bad manifest."""


class CodecError(LeafCodecError):
    """A file that is not a valid leaf-codec bitstream (truncated, corrupted, foreign, wrong model)."""


class CheckpointError(LeafCodecError):
    """A checkpoint that is missing, unreadable or for another architecture."""


class ResourceError(LeafCodecError):
    """An image or file that needs more pixels or memory than the stated limit (``--max-pixels``,
    ``--max-memory``), or an allocation that failed anyway."""


def shown(path) -> str:
    """A path as a message prints it: as it is, or quoted with its control characters escaped (``repr``) when it
    has any (a newline, a tab, undecodable bytes), so that every message stays on one line."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def plural(n: int, noun: str) -> str:
    """``1 byte``, ``0 bytes``, ``2 bytes`` (``noun`` singular; its plural takes an s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
