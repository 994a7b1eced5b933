"""The audit log: one JSON line per request (HTTP and gRPC) on stdout, in batches."""

from __future__ import annotations

import asyncio
import json
from json.encoder import encode_basestring_ascii
from typing import TextIO


def audit_line(fields: dict[str, object]) -> str:
    """`json.dumps(fields, separators=(",", ":"))`, byte for byte, for the audit record's
    flat values. json.dumps builds a new encoder for every call, which cost a quarter of
    a gRPC call's own Python (py-spy, `hack/bench-runtime --cpu`); strings still go
    through json's own C escaping. Keys are our own identifiers: nothing to escape."""
    parts = []
    for key, value in fields.items():
        kind = type(value)
        if value is None:
            text = "null"
        elif kind is str:
            text = encode_basestring_ascii(value)
        elif kind is bool:
            text = "true" if value else "false"
        elif kind is int or (kind is float and value == value and abs(value) != float("inf")):
            text = repr(value)
        else:  # anything else (never on the hot path): json's own rules
            text = json.dumps(value, separators=(",", ":"))
        parts.append(f'"{key}":{text}')
    return "{" + ",".join(parts) + "}"


class AuditLog:
    """One JSON line per request on stdout, written in batches: a write syscall per
    request costs more than the rest of the audit record; 50 ms of delay costs nothing."""

    def __init__(self, stream: TextIO, interval_s: float = 0.05) -> None:
        self.stream = stream
        self.interval_s = interval_s
        self.pending: list[str] = []

    def record(self, fields: dict[str, object]) -> None:
        self.write(audit_line(fields))

    def write(self, line: str) -> None:
        if not self.pending:
            asyncio.get_running_loop().call_later(self.interval_s, self.flush)
        self.pending.append(line)

    def flush(self) -> None:
        if self.pending:
            lines, self.pending = self.pending, []
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
