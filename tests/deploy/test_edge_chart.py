"""The chart's edge: Envoy's official image with the configuration tools/genenvoy.py generates,
rendered for Ordos (IoT per district) and checked as Kubernetes and as Envoy would check them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_support import (
    CITY_VALUES,
    NAMESPACE,
    RELEASE,
    ROOT,
    SERVICES,
    objects,
    pod_spec,
    render,
    selects,
)

ENVOY = Path(sys.executable).parent / "envoy"
EDGE_ON = (
    'edge={"enabled": true, "corsOrigins": ["https://wuye.example"], "publicBurst": 7}',
    'edge.ingress={"enabled": true, "host": "wuye.example", "className": "nginx"}',
)


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    # The configuration follows the protos: generated here, as before an install.
    subprocess.run([sys.executable, "tools/genenvoy.py", "--chart"], cwd=ROOT, check=True)
    return render(CITY_VALUES, sets=EDGE_ON)


def _edge(docs: list[dict], kind: str) -> dict:
    return objects(docs, kind)[f"{RELEASE}-edge"]


def test_the_edge_is_off_unless_enabled() -> None:
    assert not [d for d in render(CITY_VALUES) if d["metadata"]["name"].startswith("wuye-edge")]


def test_the_edge_manifests_are_valid_kubernetes(docs: list[dict]) -> None:
    import kubernetes_validate

    edge = [
        d for d in docs if d["metadata"]["name"] in (f"{RELEASE}-edge", f"{RELEASE}-edge-metrics")
    ]
    assert {d["kind"] for d in edge} == {
        *("ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress"),
        *("NetworkPolicy", "Service"),
    }
    for version in ("1.30.0", "1.33.0"):
        for doc in edge:
            kubernetes_validate.validate(doc, version, strict=True)


def test_envoy_accepts_the_configuration_and_it_reaches_every_service(
    docs: list[dict], tmp_path: Path
) -> None:
    text = _edge(docs, "ConfigMap")["data"]["envoy.json"]
    config = json.loads(text)
    path = tmp_path / "envoy.json"
    path.write_text(text)
    checked = subprocess.run(
        [ENVOY, "--mode", "validate", "-c", path], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    addresses = {
        c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
            "socket_address"
        ]["address"]
        for c in config["static_resources"]["clusters"]
    }
    suffix = f".{NAMESPACE}.svc"
    for service in SERVICES:
        assert addresses[f"{service}-150603"] == f"{RELEASE}-{service}-150603{suffix}"
    # Ordos runs the registry city-wide, and IoT per district only: a request naming no
    # district goes to the city-wide Service, or else to the first district's.
    assert addresses["registry"] == f"{RELEASE}-registry{suffix}"
    assert addresses["iot"] == f"{RELEASE}-iot-150602{suffix}"
    # The values reach the configuration.
    [listener] = [x for x in config["static_resources"]["listeners"] if x["name"] == "edge"]
    [host] = listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"][
        "virtual_hosts"
    ]
    cors = host["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert cors["allow_origin_string_match"] == [{"exact": "https://wuye.example"}]
    limits = [
        route["typed_per_filter_config"]["envoy.filters.http.local_ratelimit"]["token_bucket"]
        for route in host["routes"]
        if "envoy.filters.http.local_ratelimit" in route.get("typed_per_filter_config", {})
    ]
    assert limits and {bucket["max_tokens"] for bucket in limits} == {7}
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_the_edge_pods_are_hardened_probed_served_and_scraped(docs: list[dict]) -> None:
    deployment = _edge(docs, "Deployment")
    spec = pod_spec(deployment)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    [container] = spec["containers"]
    assert container["image"] == "envoyproxy/envoy:v1.40-latest"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert set(container["resources"]["limits"]) >= {"cpu", "memory"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "metrics": 9464}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    assert (
        _edge(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"]
        == (deployment["metadata"]["name"])
    )
    for service in (_edge(docs, "Service"), objects(docs, "Service")[f"{RELEASE}-edge-metrics"]):
        assert selects(service["spec"]["selector"], labels)
    (monitor,) = objects(docs, "ServiceMonitor").values()
    metrics = objects(docs, "Service")[f"{RELEASE}-edge-metrics"]
    assert selects(monitor["spec"]["selector"]["matchLabels"], metrics["metadata"]["labels"])
    assert selects(_edge(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"], labels)
    backend = _edge(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"] == {"name": f"{RELEASE}-edge", "port": {"name": "http"}}
