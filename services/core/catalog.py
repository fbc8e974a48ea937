"""The services of the platform, found by their declarations: a package `wuye.<name>` with a
`service.py` whose `SPEC` is a ServiceSpec is a service. The launcher, the chart's generated
values, the operators' README and the dashboard all take their list from here, so a new
service is one declaration and nothing else to register.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from typing import TYPE_CHECKING

import wuye

if TYPE_CHECKING:
    from wuye.core.service import ServiceSpec

# The core is the platform's shared code, not a service.
_NOT_SERVICES = frozenset({"core"})


def service_names() -> tuple[str, ...]:
    """Every declared service, by name, in alphabetical order (the order ports count up in)."""
    return tuple(
        sorted(
            module.name
            for module in pkgutil.iter_modules(wuye.__path__)
            if module.ispkg
            and module.name not in _NOT_SERVICES
            and importlib.util.find_spec(f"wuye.{module.name}.service") is not None
        )
    )


def load_spec(name: str) -> ServiceSpec:
    spec = importlib.import_module(f"wuye.{name}.service").SPEC
    if spec.name != name:
        raise ValueError(f"wuye.{name}.service declares a service named {spec.name!r}")
    return spec


def load_specs() -> tuple[ServiceSpec, ...]:
    """The declarations of every service, in service_names() order; a service that calls one
    not declared is refused here, before anything is started or generated for it."""
    specs = tuple(load_spec(name) for name in service_names())
    names = {spec.name for spec in specs}
    for spec in specs:
        unknown = sorted(set(spec.calls) - names)
        if unknown:
            raise ValueError(f"{spec.name} calls {', '.join(unknown)}: no such service declared")
    return specs
