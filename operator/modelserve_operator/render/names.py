"""Object names and label values that always pass Kubernetes validation.

A ModelDeployment's name is a DNS subdomain (up to 253 characters, dots allowed), but
the Services we derive from it must be DNS-1035 labels (63 characters, no dots, starting
with a letter) and label values stop at 63 characters. Names that already fit are used
as they are, so the common case reads naturally; any name we had to change gets a short
hash of the original, so two long names sharing a prefix never collide.
"""

from __future__ import annotations

import hashlib
import re

MAX_LABEL = 63
_HASH_LEN = 8
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def short_hash(text: str, length: int = _HASH_LEN) -> str:
    """A stable hex digest prefix: the same input gives the same name on every reconcile."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def dns_label(base: str, suffix: str = "") -> str:
    """`base + suffix` as a DNS-1035 label; `suffix` (e.g. "-r7") survives truncation.

    The suffix is kept readable because it is what tells revisions apart in `kubectl get`.
    """
    wanted = base + suffix
    if len(wanted) <= MAX_LABEL and _DNS_LABEL.match(wanted):
        return wanted
    cleaned = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = "m-" + cleaned  # Services must start with a letter
    tail = f"-{short_hash(wanted)}{suffix}"
    return cleaned[: MAX_LABEL - len(tail)].rstrip("-") + tail


def label_value(value: str) -> str:
    """`value` as a valid label value (63 characters, alphanumeric at both ends)."""
    if len(value) <= MAX_LABEL and _LABEL_VALUE.match(value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", value).strip("-_.")
    tail = f"-{short_hash(value)}"
    return cleaned[: MAX_LABEL - len(tail)].rstrip("-_.") + tail


def deployment_name(md_name: str, revision: int, role: str) -> str:
    """Name of a revision's Deployment and of its Service (the two always match).

    The fallback has one fixed name: it is not a revision of the primary, and a fixed
    name lets a changed fallback version roll in place instead of piling up Deployments.
    """
    if role == "fallback":
        return dns_label(md_name, "-fallback")
    return dns_label(md_name, f"-r{revision}")


def service_name(md_name: str) -> str:
    """Name of the user-facing Service: the ModelDeployment's own name when it fits."""
    return dns_label(md_name)
