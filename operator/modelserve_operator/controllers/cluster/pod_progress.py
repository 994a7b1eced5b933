"""Read the progress endpoint of pods that are not Ready yet (decisions/pod_progress.py
says which pods and what to make of the answers).

A plain GET to the pod IP on its HTTP port: the pod needs no API credentials and the
operator no pods/log permission. Best effort with a short timeout: a pod that does not
answer (its init container still starting, a node the operator cannot reach, a kwok
fake pod) is asked again only after QUIET_SECONDS, so a reconcile never waits on it twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp

from modelserve_runtime.contract import PROGRESS_PATH

log = logging.getLogger("modelserve.operator")

TIMEOUT = aiohttp.ClientTimeout(total=1.0, sock_connect=0.5)
FRESH_SECONDS = 2.0   # a reconcile woken again at once reuses the answer
QUIET_SECONDS = 10.0  # after no answer


class PodProgressReader:
    """Answers by pod name; remembers the last answer (or silence) per pod IP."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._seen: dict[tuple[str, int], tuple[float, dict[str, Any] | None]] = {}

    async def __call__(self, targets: Iterable[tuple[str, str, int]]) -> dict[str, dict]:
        targets = list(targets)
        now = self.clock()
        ask = [t for t in targets if not self._recent((t[1], t[2]), now)]
        if ask:
            async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
                answers = await asyncio.gather(*(self._get(session, ip, port)
                                                 for _, ip, port in ask))
            for (_, ip, port), answer in zip(ask, answers, strict=True):
                self._seen[(ip, port)] = (now, answer)
        live = {(ip, port) for _, ip, port in targets}
        for key in [k for k in self._seen if k not in live]:
            del self._seen[key]  # pods that went Ready or away
        return {pod: answer for pod, ip, port in targets
                if (answer := self._seen.get((ip, port), (0, None))[1]) is not None}

    def _recent(self, key: tuple[str, int], now: float) -> bool:
        at, answer = self._seen.get(key, (None, None))
        if at is None:
            return False
        return now - at < (FRESH_SECONDS if answer is not None else QUIET_SECONDS)

    @staticmethod
    async def _get(session: aiohttp.ClientSession, ip: str, port: int) -> dict | None:
        host = f"[{ip}]" if ":" in ip else ip
        try:
            async with session.get(f"http://{host}:{port}{PROGRESS_PATH}") as response:
                if response.status != 200:
                    return None
                body = await response.json(content_type=None)
                return body if isinstance(body, dict) else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            log.debug("no progress from %s:%d: %s", ip, port, e)
            return None
