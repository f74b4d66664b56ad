"""Unit-test fixtures: ``engine_impl`` runs a test once with the engine's C loop and once with its
Python loop (``pytestmark = pytest.mark.usefixtures("engine_impl")``). The C run fails, not skips,
where the extension is not built: pip install builds it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.engine.partition import UserPartition


@pytest.fixture(params=["c", "python"])
def engine_impl(request: pytest.FixtureRequest) -> Iterator[str]:
    saved = UserPartition.native_default
    UserPartition.native_default = request.param == "c"
    try:
        yield request.param
    finally:
        UserPartition.native_default = saved
