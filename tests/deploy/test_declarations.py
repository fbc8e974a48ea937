"""A service is one declaration (services/<name>/service.py): the generated parts of the chart's
values and schema, the dashboard and the operators' README agree with the declarations; the
chart gives a service the addresses of those it calls; and a new service, added in a copy of the
tree with nothing else changed, reaches the launcher, the chart, the dashboard and the wheel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from deploy_support import CITY_VALUES, RELEASE, ROOT, env_of, objects, pod_spec, render, tool

from wuye.core.catalog import service_names

pytestmark = pytest.mark.deploy

GENERATOR = "tools/gendeploy.py"
STARTUP_SECONDS = 120


def test_generated_files_agree_with_the_declarations() -> None:
    check = subprocess.run(
        [sys.executable, GENERATOR, "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def _endpoints(docs: list[dict], deployment: str) -> str | None:
    container = pod_spec(objects(docs, "Deployment")[deployment])["containers"][0]
    found = env_of(container).get("WUYE_SERVICE_ENDPOINTS")
    return found and found["value"]


def test_a_service_gets_the_addresses_of_the_services_it_calls() -> None:
    docs = render(CITY_VALUES, sets=('services.registry.calls=["credit","iot"]',))
    # credit runs city-wide; ordos.yaml gives every district its own iot instance.
    wanted = f"credit={RELEASE}-credit.wuye.svc:50051,iot={RELEASE}-iot-{{district}}.wuye.svc:50051"
    for part in ("registry", "registry-relay"):
        assert _endpoints(docs, f"{RELEASE}-{part}") == wanted, part
    assert _endpoints(docs, f"{RELEASE}-credit") is None, "credit calls nobody"


def test_calling_a_service_that_is_not_deployed_is_refused() -> None:
    result = subprocess.run(
        [
            *(tool("helm"), "template", RELEASE, ROOT / "charts" / "wuye"),
            *("--set-json", 'services.registry.calls=["credit"]'),
            *("--set", "services.credit.enabled=false"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "services.registry calls credit, which is not enabled" in result.stderr


# ---------------------------------------------------------------- a new service

THROWAWAY = {
    "__init__.py": '"""A service that exists only to show what a new one needs."""\n',
    "__main__.py": """\
        from wuye.core.entry import run

        run(__package__)
        """,
    "settings.py": """\
        from wuye.core.settings import Settings


        class ThrowawaySettings(Settings):
            service: str = "throwaway"
        """,
    "service.py": """\
        from pathlib import Path

        from wuye.core.service import ServiceSpec, TimerSpec
        from wuye.throwaway.settings import ThrowawaySettings

        SPEC = ServiceSpec(
            name="throwaway",
            settings_type=ThrowawaySettings,
            migrations_dir=Path(__file__).parent / "migrations",
            definitions=lambda settings, engine: [],
            topics=("wuye.throwaway.thing.v1",),
            timers=(TimerSpec("nothing", lambda settings: 60.0, lambda settings, engine: 0),),
            calls=("registry",),
        )
        """,
    "migrations/versions/0001_initial.py": """\
        from alembic import op

        from wuye.core.migrate import create_core_tables

        revision = "0001"
        down_revision = None
        branch_labels = None
        depends_on = None


        def upgrade() -> None:
            create_core_tables(op)
        """,
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sources with services/throwaway added and the generator run, nothing
    else changed."""
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "setup.py"):
        shutil.copy(ROOT / name, tree)
    # With the generated protobuf code and the compiled intake loop: the generator imports them.
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("services", "protos", "tools", "charts", "deploy"):
        shutil.copytree(ROOT / folder, tree / folder, ignore=skip)
    shutil.copytree(ROOT / "tests" / "deploy", tree / "tests" / "deploy", ignore=skip)
    shutil.copy(ROOT / "tests" / "conftest.py", tree / "tests")
    # The deploy tests' tools (helm), installed once for the checkout.
    (tree / ".tools").symlink_to(ROOT / ".tools")
    for path, text in THROWAWAY.items():
        target = tree / "services" / "throwaway" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    # `wuye` is the copy's services/, ahead of the editable install of this checkout.
    (tree / "path").mkdir()
    (tree / "path" / "wuye").symlink_to(tree / "services")
    stale = subprocess.run(
        [sys.executable, GENERATOR, "--check"], cwd=tree, env=_env(tree), capture_output=True
    )
    # Until the generator runs, the check names what lacks the new service and how to fix it.
    assert stale.returncode == 1
    assert b"charts/wuye/values.yaml differs" in stale.stdout
    assert b"run `python tools/gendeploy.py`" in stale.stdout
    generated = subprocess.run(
        [sys.executable, GENERATOR], cwd=tree, env=_env(tree), capture_output=True, text=True
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    return tree


def _env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WUYE_")}
    return {**env, "PYTHONPATH": str(tree / "path")}


def test_a_new_service_reaches_the_chart_and_its_schema(tree: Path) -> None:
    values = yaml.safe_load((tree / "charts/wuye/values.yaml").read_text())
    assert values["services"]["throwaway"]["timers"] == {"enabled": True}
    schema = json.loads((tree / "charts/wuye/values.schema.json").read_text())
    assert "throwaway" in schema["properties"]["services"]["propertyNames"]["enum"]

    rendered = subprocess.run(
        [
            *(tool("helm"), "template", RELEASE, tree / "charts/wuye", "-n", "wuye"),
            *("-f", tree / "deploy/ordos.yaml", "--kube-version", "1.30.0"),
        ],
        capture_output=True,
        text=True,
    )
    assert rendered.returncode == 0, rendered.stderr
    docs = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    deployments = objects(docs, "Deployment")
    for part in ("throwaway", "throwaway-relay", "throwaway-timers"):
        assert f"{RELEASE}-{part}" in deployments, part
    assert f"{RELEASE}-throwaway-migrate" in objects(docs, "Job")
    assert _endpoints(docs, f"{RELEASE}-throwaway") == (
        f"registry={RELEASE}-registry.wuye.svc:50051"
    )
    for doc in docs:
        if doc["kind"] not in ("ServiceMonitor", "PrometheusRule"):
            kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_a_new_service_reaches_the_dashboard_and_the_readme(tree: Path) -> None:
    board = json.loads((tree / "deploy/grafana/wuye.json").read_text())
    (variable,) = [v for v in board["templating"]["list"] if v["name"] == "service"]
    assert "throwaway" in variable["query"].split(",")
    readme = (tree / "deploy/README.md").read_text()
    assert "| `throwaway` | `serve`; `relay`; `timers` | `registry` |" in readme
    services = " ".join(sorted([*service_names(), "throwaway"]))
    assert f"for service in {services}; do" in readme


def test_the_deploy_tests_know_a_new_service(tree: Path) -> None:
    """The copy's own deploy tests: its parts in the city's render, and the generated files."""
    selected = "ordos_runs_every_service or generated_files_agree"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *("tests/deploy", "-k", selected),
        ],
        cwd=tree,
        env=_env(tree),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    deploy_support = subprocess.run(
        [sys.executable, "-c", "import deploy_support; print(*deploy_support.SERVICES)"],
        cwd=tree / "tests" / "deploy",
        env=_env(tree),
        capture_output=True,
        text=True,
    )
    assert "throwaway" in deploy_support.stdout.split(), deploy_support.stderr


def test_a_new_service_is_in_the_wheel(tree: Path, tmp_path: Path) -> None:
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--wheel-dir", tmp_path, tree),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("wuye-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in THROWAWAY:
        assert f"wuye/throwaway/{path}" in names, path


def test_make_run_starts_a_new_service(tree: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    output = tmp_path / "launcher.out"
    with output.open("wb") as out:
        launcher = subprocess.Popen(
            [
                *(sys.executable, "-m", "wuye", "run", "--state-dir", state),
                *("--kafka-port", "0", "--grpc-port", "0", "--metrics-port", "0"),
            ],
            cwd=tree,
            env=_env(tree),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        platform_file = state / "platform.json"
        deadline = time.monotonic() + STARTUP_SECONDS
        while not platform_file.exists():
            if launcher.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the platform did not start:\n{output.read_text(errors='replace')}")
            time.sleep(0.2)
        platform = json.loads(platform_file.read_text())
        pids = {p["name"]: p["pid"] for p in platform["processes"]}
        environ = Path(f"/proc/{pids['throwaway all']}/environ").read_bytes().split(b"\0")
    finally:
        launcher.terminate()
        launcher.wait(60)
    assert "throwaway" in platform["grpc"]
    assert "throwaway all" in pids
    # It calls the registry, so it is told where the registry listens.
    endpoints = f"WUYE_SERVICE_ENDPOINTS=registry={platform['grpc']['registry']}".encode()
    assert endpoints in environ
    log = (state / "logs" / "throwaway-all.log").read_text()
    assert '"event": "serving"' in log and '"event": "working"' in log
