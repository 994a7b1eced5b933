"""Chart tests need helm; they skip until hack/install-tools has built it."""

from __future__ import annotations

import pytest
from chart_render import tool


@pytest.fixture(scope="session")
def helm() -> str:
    path = tool("helm")
    if path is None:
        pytest.skip("helm is not installed yet (hack/install-tools builds it; hack/test runs "
                    "these tests again after it)")
    return path
