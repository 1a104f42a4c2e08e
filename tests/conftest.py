from collections.abc import Iterator

import pytest

from tests.procs import Fleet, fleet_fixture


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    """An empty fleet root; tests start the hub and agents they need."""
    yield from fleet_fixture()


@pytest.fixture
def running_fleet(fleet: Fleet) -> Fleet:
    """A started hub with an operator credential in fleet.context."""
    fleet.start_hub()
    fleet.bootstrap_operator()
    return fleet
