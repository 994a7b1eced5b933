"""The two kinds of failure a fetch can meet, so the retry loop knows which to retry."""

from __future__ import annotations


class FetchError(Exception):
    """Retrying will not help (denied, not found, wrong digest): the message says what to fix.

    The message names the URI and what to check; `modelserve-runtime fetch` prints it and
    writes it to the container's termination message, where the pod status shows it.
    """


class TransientError(Exception):
    """Worth another try after a pause: a dropped connection, a timeout, a 5xx or throttling."""
