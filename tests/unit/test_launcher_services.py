"""`make run ARGS="--services NAME,..."`: the services asked for, and those they call."""

import pytest

from wuye.core.catalog import load_specs
from wuye.launcher import LaunchFailed, chosen_specs


def names(*asked: str) -> list[str]:
    return [spec.name for spec in chosen_specs(asked)]


def test_every_service_when_none_is_named():
    assert names() == [spec.name for spec in load_specs()]


def test_a_service_comes_with_the_services_it_calls():
    caller = next(spec for spec in load_specs() if spec.calls)
    assert set(names(caller.name)) >= {caller.name, *caller.calls}
    assert len(names(caller.name)) < len(names())


def test_a_service_that_calls_none_comes_alone():
    assert names("registry") == ["registry"]


def test_an_unknown_name_is_refused_with_the_names_there_are():
    with pytest.raises(LaunchFailed, match=r"no service named nosuch: the services are .*registry"):
        chosen_specs(("nosuch",))
