from collections.abc import Iterator

import pytest

from tests.procs import Fleet, fleet_fixture, log_tails


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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test that ran real processes shows what each of them logged last (read
    before teardown stops them), so a failure on CI can be understood from its report."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    for fleet in {id(v): v for v in funcargs.values() if isinstance(v, Fleet)}.values():
        for title, text in log_tails(fleet):
            report.sections.append((title, text))
