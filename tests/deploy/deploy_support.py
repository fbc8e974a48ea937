"""Helpers of the deploy checks: paths, tools (installed by `make check-deploy`), renders."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wuye.core import settings
from wuye.core.catalog import load_specs

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "wuye"
DEPLOY = ROOT / "deploy"
CITY_VALUES = DEPLOY / "ordos.yaml"
DISTRICT_OVERLAYS = sorted((DEPLOY / "districts").glob("*.yaml"))
# The services' own list of the city's districts.
ORDOS_DISTRICTS = tuple(sorted(settings.ORDOS_DISTRICTS))
# Every declared service; the chart's values are generated from the same declarations.
SPECS = load_specs()
SERVICES = tuple(spec.name for spec in SPECS)
# Services whose servers each own their districts' state in memory (chart value singleOwner).
SINGLE_OWNER_SERVICES = tuple(spec.name for spec in SPECS if spec.single_owner)
RELEASE = "wuye"
NAMESPACE = "wuye"
INSTALL = "make check-deploy (it installs helm, kubernetes-validate, hadolint and checks promtool)"


def tool(name: str) -> str:
    """A tool's path: .tools/bin, then the venv's bin, then PATH; a clear failure if absent."""
    for candidate in (ROOT / ".tools" / "bin" / name, Path(sys.executable).parent / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; run {INSTALL}")
    return found


def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")
    return result


def helm(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(tool("helm"), *args, check=check)


@functools.cache
def _render(values_files: tuple[Path, ...], sets: tuple[str, ...]) -> tuple[dict, ...]:
    # Rendered for the oldest Kubernetes the chart supports (Chart.yaml's kubeVersion).
    args: list[str | Path] = ["template", RELEASE, CHART, "--namespace", NAMESPACE]
    args += ["--kube-version", "1.30.0"]
    for path in values_files:
        args += ["--values", path]
    for item in sets:
        args += ["--set-json", item]
    docs = yaml.safe_load_all(helm(*args).stdout)
    return tuple(doc for doc in docs if doc)


def render(*values_files: Path, sets: tuple[str, ...] = ()) -> list[dict]:
    """`helm template` of the chart with these values files and --set-json items."""
    return list(_render(tuple(values_files), tuple(sets)))


def objects(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def env_of(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())
