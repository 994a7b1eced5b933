"""Errors that map to an HTTP status; everything else is a 500."""

from __future__ import annotations


class InferenceError(Exception):
    """A request failed in a way the caller can act on; `status` is the HTTP code."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class BadRequest(InferenceError):
    status = 400


class NotFound(InferenceError):
    status = 404


class PayloadTooLarge(InferenceError):
    status = 413


class Overloaded(InferenceError):
    """The batch queue is full: 503 with Retry-After rather than unbounded memory."""

    status = 503


class Unavailable(InferenceError):
    """Not ready yet, or draining for shutdown."""

    status = 503
