"""Exceptions raised by detequiv.

Every exception derives from :class:`DetEquivError`; each message names the
offending input and says how to fix it.
"""

from __future__ import annotations

__all__ = [
    "DetEquivError",
    "InvalidArgument",
    "InvalidPartition",
    "InvalidWord",
    "UnknownLaw",
    "UndefinedTransform",
    "VerificationError",
]


class DetEquivError(Exception):
    """Base class of every error detequiv raises on purpose."""


class InvalidArgument(DetEquivError, ValueError):
    """An argument is out of range or of the wrong kind (order < 1, ratio <= 0, ...)."""


class InvalidPartition(DetEquivError, ValueError):
    """Blocks that overlap, miss a position, or cross each other."""


class InvalidWord(DetEquivError, ValueError):
    """A trace word that is empty, mixes unknown letters, or has inconsistent letters."""


class UnknownLaw(DetEquivError, ValueError):
    """A law name the command line or a parser does not know."""


class UndefinedTransform(DetEquivError, ValueError):
    """A transform that does not exist for the given law (e.g. the S-transform when m1 = 0)."""


class VerificationError(DetEquivError, AssertionError):
    """A witness (series or Monte Carlo) disagrees; the message carries the evidence."""
