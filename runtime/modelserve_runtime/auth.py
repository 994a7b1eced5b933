"""API-key authentication.

Keys come from a mounted Secret file: one key per line, optionally `id:key` so the audit
log can name the caller without ever logging the key. Comparison is constant-time over
every key (no early exit), on SHA-256 digests so key lengths do not leak either.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class ApiKeys:
    entries: tuple[tuple[str, bytes], ...]  # (key id, sha256 of key)

    @classmethod
    def from_file(cls, path: str) -> ApiKeys:
        entries = []
        with open(path, encoding="utf-8") as f:
            for number, raw in enumerate(f, start=1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                key_id, sep, key = line.partition(":")
                if not sep:
                    key, key_id = line, ""
                if not key:
                    raise ValueError(f"{path}:{number}: empty API key")
                digest = hashlib.sha256(key.encode()).digest()
                # Without an explicit id, a digest prefix identifies the key in logs.
                entries.append((key_id or f"sha256:{digest.hex()[:12]}", digest))
        if not entries:
            raise ValueError(f"{path}: no API keys found; remove --api-keys-file to disable auth")
        return cls(tuple(entries))

    def identify(self, presented: str | None) -> str | None:
        """Return the key id for a presented key, or None if it matches no key."""
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for key_id, expected in self.entries:
            if hmac.compare_digest(digest, expected) and found is None:
                found = key_id
        return found


def presented_key(headers: object) -> str | None:
    """`Authorization: Bearer <key>` (KServe/Triton clients) or `X-API-Key: <key>`."""
    auth = headers.get("Authorization", "")  # type: ignore[attr-defined]
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("X-API-Key")  # type: ignore[attr-defined]
