"""The image: the Dockerfile is hadolint-clean and pinned, and the wheel it installs holds
everything the services load at run time (generated protobuf code, the compiled intake loop,
migrations, standards)."""

from __future__ import annotations

import re
import shutil
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from deploy_support import ROOT, run, tool

from wuye.core.catalog import service_names

pytestmark = pytest.mark.deploy

DOCKERFILE = ROOT / "docker" / "Dockerfile"


def test_hadolint_is_clean() -> None:
    result = run(tool("hadolint"), "--no-color", DOCKERFILE, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_script_parses() -> None:
    run("bash", "-n", ROOT / "docker" / "build.sh")


def stages(text: str) -> list[str]:
    return re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]


def test_dockerfile_pins_and_runtime_stage() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE).group(1)
    assert re.fullmatch(
        r"docker\.io/library/python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base
    ), base

    # The build stage's tools are pyproject's pins.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pin = re.compile(r"([\w.-]+)(?:\[\w+\])?==(\S+)")
    pins = dict(pin.fullmatch(spec).groups() for spec in specs if "==" in spec)
    assert f"ARG GRPCIO_TOOLS_VERSION={pins['grpcio-tools']}" in text
    assert f"ARG GOOGLEAPIS_COMMON_PROTOS_VERSION={pins['googleapis-common-protos']}" in text

    build, final = stages(text)
    assert build.startswith("${BASE_IMAGE} AS build")
    assert final.startswith("${BASE_IMAGE}\n")
    assert "grpcio-tools" not in final and "apt-get" not in final and "pip install" not in final
    assert "COPY --from=build /opt/wuye /opt/wuye" in final
    assert re.search(r"^USER 10001:10001$", final, re.MULTILINE)
    assert "PYTHONDONTWRITEBYTECODE=1" in final


def test_the_wheel_holds_generated_code_migrations_and_standards(tmp_path: Path) -> None:
    """Built as the Dockerfile builds it (a fresh copy of the sources, protobuf code generated,
    `pip wheel .`), not the editable install the tests use."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py"):
        shutil.copy(ROOT / name, source)
    for folder in ("protos", "tools", "services"):
        # Without what a working tree may hold: bytecode, and protobuf code and compiled modules
        # built earlier.
        skip = ("__pycache__", "v1", "*.so") if folder == "services" else ("__pycache__",)
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns(*skip))
    run(sys.executable, source / "tools" / "genproto.py", "--force")
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        tmp_path / "wheels",
        source,
    )
    (wheel,) = (tmp_path / "wheels").glob("wuye-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    generated = sorted(p.parent.name for p in (ROOT / "protos" / "wuye").glob("*/v1"))
    missing = [
        f"wuye/{package}/v1/{proto.stem}_pb2.py"
        for package in generated
        for proto in (ROOT / "protos" / "wuye" / package / "v1").glob("*.proto")
        if f"wuye/{package}/v1/{proto.stem}_pb2.py" not in names
    ]
    assert not missing, f"the wheel lacks generated code: {', '.join(missing)}"
    for name in ("env.py", "script.py.mako"):
        assert f"wuye/core/migrations_env/{name}" in names
    for version in ROOT.glob("services/*/migrations/versions/*.py"):
        assert f"wuye/{version.relative_to(ROOT / 'services').as_posix()}" in names
    for service in service_names():
        assert f"wuye/{service}/service.py" in names
    for standard in (ROOT / "services" / "core" / "standards").glob("*.json"):
        assert f"wuye/core/standards/{standard.name}" in names
    assert [n for n in names if n.startswith("wuye/iot/_readings.") and n.endswith(".so")]
