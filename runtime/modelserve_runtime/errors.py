"""Errors that map to an HTTP status (and a gRPC code); everything else is a 500."""

from __future__ import annotations

MAX_MESSAGE_CHARS = 1000


def quote(value: object, limit: int = 80) -> str:
    """repr() of a caller-supplied value, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-1]}"


def name_list(names: list[str], limit: int = 10) -> str:
    """A sorted list of caller-supplied names for a message: at most `limit` of them,
    each cut short, and how many were left out."""
    shown = ", ".join(quote(n, 40) for n in names[:limit])
    more = f", and {len(names) - limit} more" if len(names) > limit else ""
    return f"[{shown}{more}]"


class InferenceError(Exception):
    """A request failed in a way the caller can act on; `status` is the HTTP code."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        # Messages quote what the caller sent; a hostile request must not turn into a
        # large error body (or log line), whatever it quoted.
        if len(message) > MAX_MESSAGE_CHARS:
            cut = len(message) - MAX_MESSAGE_CHARS
            message = f"{message[:MAX_MESSAGE_CHARS]}... ({cut} more characters)"
        super().__init__(message)
        if status is not None:
            self.status = status


class BadRequest(InferenceError):
    status = 400


class RequestTimeout(InferenceError):
    """The body did not arrive within --body-timeout-s."""

    status = 408


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


class ClientClosed(InferenceError):
    """The client went away (hung up, or cancelled the call) before the answer: counted
    as 499, as nginx does, never as a server error."""

    status = 499
