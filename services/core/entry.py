"""A service's `python -m wuye.<service>`: its runtime, or one of its tools that anyone runs."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import NoReturn


def run(package: str, tools: Mapping[str, str] | None = None) -> NoReturn:
    """`tools` maps a command (`verify-tally`) to the module whose `main(argv)` runs it. A tool
    starts without importing the service's runtime (gRPC server, database, Kafka: seconds),
    since the public runs it on a laptop to check a published record."""
    command = sys.argv[1:2]
    if command and command[0] in (tools or {}):
        tool = importlib.import_module((tools or {})[command[0]])
        sys.exit(tool.main(sys.argv[2:]))
    from wuye.core.service import run_module

    run_module(package)
