"""Exceptions raised by vellum.

Every error the Rust library reports arrives as one of these classes, with vellum's message
(which names the file, field, line or id involved) and a ``kind`` attribute naming the Rust
error variant (``"DuplicateId"``, ``"NoSuchField"``, ``"Corrupt"``, ...). Each class also derives
from the matching built-in exception, so ``except ValueError`` catches bad input as usual.
"""

from __future__ import annotations

__all__ = [
    "VellumError",
    "InvalidInputError",
    "NotFoundError",
    "AlreadyExistsError",
    "LockedError",
    "CorruptError",
    "EncoderError",
    "ShardError",
    "VellumIOError",
    "Interrupted",
]


class VellumError(Exception):
    """Base class of every vellum error. ``kind`` names the Rust error variant."""

    kind: str = "Other"


class InvalidInputError(VellumError, ValueError):
    """The caller gave something that does not fit: a wrong shape or dimension, a non-finite
    value, a duplicate id, an invalid schema, parameter or query, a malformed input file."""


class NotFoundError(VellumError, LookupError):
    """No database at the path, or no such collection or field."""


class AlreadyExistsError(VellumError, FileExistsError):
    """A database already exists where one was to be created."""


class LockedError(VellumError):
    """Another writer holds the database (one writer per database; readers never block)."""


class CorruptError(VellumError):
    """A file is damaged, or was written by a newer format version than this build reads."""


class EncoderError(VellumError):
    """A model cannot be used as an encoder, a field has no encoder, or a query encoder does not
    match the one the field was built with."""


class ShardError(VellumError):
    """The databases of a shard set do not hold shards of one collection."""


class VellumIOError(VellumError, OSError):
    """An operating-system call failed (path, permissions, free space)."""


class Interrupted(VellumError):
    """An ingest, training or re-encode was interrupted (Ctrl-C); everything committed before (and
    training's last checkpoint) is kept: run it again to continue."""
