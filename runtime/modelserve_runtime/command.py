"""The `modelserve-runtime` command: `fetch` (the init container) or the server.

A dispatcher of its own so that the fetch, which runs before every pod starts, does not
import the server's dependencies (numpy, aiohttp, the backends: 1-2 s on a busy node) that
it never uses.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fetch"]:
        from .fetch import main as fetch_main

        return fetch_main(argv[1:])
    from .server import main as server_main

    return server_main(argv)


if __name__ == "__main__":
    sys.exit(main())
