"""Prometheus text exposition → {'name{labels}': value}, through prometheus_client's parser.

One parser for every test and benchmark that scrapes /metrics (the operator's, the
runtime's); keys keep the exposition's form so a test can match a sample by prefix.
"""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def scrape(url: str, timeout: float = 5) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return samples(response.read().decode())
