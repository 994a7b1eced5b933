"""kstatus tests need the Go command hack/install-kstatus builds (once, then cached)."""

from __future__ import annotations

import pytest

from e2e import kstatus


@pytest.fixture(scope="session")
def judge():
    try:
        kstatus.binary()
    except kstatus.KstatusMissing as error:
        pytest.skip(f"hack/install-kstatus could not build kstatus: {error}")
    return kstatus.judge
