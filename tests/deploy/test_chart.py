"""The chart: lint, schema, every rendered manifest valid for Kubernetes 1.30 and 1.33, and what
the renders must hold (hardened containers, probes, secrets, network policies, migrations)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from deploy_support import (
    CHART,
    CITY_VALUES,
    DISTRICT_OVERLAYS,
    ORDOS_DISTRICTS,
    RELEASE,
    SERVICES,
    SINGLE_OWNER_SERVICES,
    SPECS,
    env_of,
    helm,
    objects,
    pod_spec,
    render,
    selects,
)

pytestmark = pytest.mark.deploy

KUBERNETES_VERSIONS = ("1.30.0", "1.33.0")
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
# Egress restricted to DNS, PostgreSQL and Kafka, plus what a service adds (IoT: MQTT).
RESTRICT_EGRESS = (
    "networkPolicy.restrictEgress=true",
    "networkPolicy.egress="
    + json.dumps(
        [
            {
                "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}],
                "ports": [{"port": port, "protocol": "TCP"}],
            }
            for ns, port in (("db", 5432), ("kafka", 9092))
        ]
    ),
    # Callers of the gRPC APIs narrowed to the cluster's own namespaces.
    'networkPolicy.grpcFrom=[{"namespaceSelector": {}}]',
)
CITY_WIDE_SERVICES = tuple(s for s in SERVICES if s not in SINGLE_OWNER_SERVICES)

RENDERS = {
    "defaults": ((), ()),
    "ordos": ((CITY_VALUES,), ()),
    **{f"ordos+{path.stem}": ((CITY_VALUES, path), ()) for path in DISTRICT_OVERLAYS},
    "ordos+all-districts": ((CITY_VALUES, *DISTRICT_OVERLAYS), ()),
    "ordos+restricted-network": ((CITY_VALUES,), RESTRICT_EGRESS),
    "autoscaling-everywhere": (
        (),
        ('defaults.serve.autoscaling={"enabled": true, "minReplicas": 2, "maxReplicas": 4}',),
    ),
}


def rendered(name: str) -> list[dict]:
    files, sets = RENDERS[name]
    return render(*files, sets=sets)


def all_docs() -> list[tuple[str, dict]]:
    return [(name, doc) for name in RENDERS for doc in rendered(name)]


def workloads(docs: list[dict]) -> list[dict]:
    return [doc for doc in docs if doc["kind"] in ("Deployment", "Job")]


# ---------------------------------------------------------------- lint, schema, validity


@pytest.mark.parametrize("values", [(), (CITY_VALUES,), (CITY_VALUES, *DISTRICT_OVERLAYS)])
def test_helm_lint_strict(values: tuple[Path, ...]) -> None:
    args = [arg for path in values for arg in ("--values", str(path))]
    result = helm("lint", "--strict", CHART, *args)
    assert "0 chart(s) failed" in result.stdout


def test_the_chart_knows_the_districts_the_services_know() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert tuple(values["cityDistricts"]) == ORDOS_DISTRICTS
    assert tuple(schema["$defs"]["districtCode"]["enum"]) == ORDOS_DISTRICTS
    assert tuple(path.stem for path in DISTRICT_OVERLAYS) == ORDOS_DISTRICTS


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_kubernetes(version: str) -> None:
    """kubernetes-validate --strict (unknown fields rejected) on every distinct manifest of
    every render; the two custom resources are checked by their own tests below."""
    import kubernetes_validate

    seen: set[str] = set()
    for name, doc in all_docs():
        if doc["kind"] in CRD_KINDS:
            continue
        key = json.dumps(doc, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {e.message} at {e.path}")
    assert len(seen) > 50


def test_the_validator_rejects_what_kubernetes_would() -> None:
    """Guards the test above: a misspelt field and a wrong type do fail."""
    import kubernetes_validate

    deployment = objects(rendered("defaults"), "Deployment")[f"{RELEASE}-registry"]
    container = pod_spec(deployment)["containers"][0]
    for broken in ({**container, "readOnlyRootFileSystem": True}, {**container, "ports": "grpc"}):
        doc = json.loads(json.dumps(deployment))
        pod_spec(doc)["containers"][0] = broken
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[0], strict=True)


def test_only_known_custom_resources() -> None:
    kinds = {doc["kind"] for _, doc in all_docs()}
    assert kinds - CRD_KINDS <= {
        *("Deployment", "Job", "Service", "HorizontalPodAutoscaler"),
        *("PodDisruptionBudget", "NetworkPolicy"),
    }


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            'services.registry.districts={"150699": {"replicas": 2}}',
            'must be one of the following: "150602"',
        ),
        (
            'services.registry.districts={"150602": {"replicas": -1}}',
            "replicas: Must be greater than or equal to 0",
        ),
        (
            "defaults.relay.replicas=-2",
            "defaults.relay.replicas: Must be greater than or equal to 0",
        ),
        ("image.repository=null", "image: repository is required"),
        (
            'image.repository=""',
            "image.repository: String length must be greater than or equal to 1",
        ),
        ('image.digest="latest"', "image.digest: Does not match pattern"),
        ('cityDistricts=["150602", "110101"]', "must be one of the following"),
        ("services.registry.replicas=3", "Additional property replicas is not allowed"),
        ("defaults.serve.resources.limits=null", "defaults.serve.resources: limits is required"),
        (
            'services.registry.serve.autoscaling={"enabled": true, "minReplicas": 5, '
            '"maxReplicas": 3}',
            "autoscaling.minReplicas 5 is above maxReplicas 3",
        ),
        # A singleOwner service's instance is one pod: no more replicas, no autoscaler, no
        # disruption budget.
        (
            'services.iot.districts={"150602": {"replicas": 2}}',
            "services.iot.districts.150602.replicas: Must be less than or equal to 1",
        ),
        (
            "services.iot.serve.replicas=2",
            "services.iot.serve.replicas: Must be less than or equal to 1",
        ),
        (
            'services.iot.districts={"150603": {"autoscaling": {"enabled": true}}}',
            "services.iot.districts.150603.autoscaling.enabled must be one of the following: false",
        ),
        (
            'services.iot.districts={"150621": {"podDisruptionBudget": {"minAvailable": 1}}}',
            "services.iot.districts.150621.podDisruptionBudget: Invalid type. Expected: null",
        ),
        (
            'services.iot.serveSecrets={"WUYE_IOT_OTHER_KEY": {"name": "k"}}',
            "services.iot.serveSecrets.WUYE_IOT_OTHER_KEY: key is required",
        ),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(setting: str, message: str) -> None:
    result = helm("template", RELEASE, CHART, "--set-json", setting, check=False)
    assert result.returncode != 0, f"{setting} was accepted"
    assert message in result.stderr, result.stderr


# ---------------------------------------------------------------- the city and its districts


def serve_deployments(docs: list[dict], service: str) -> dict[str, dict]:
    return {
        name: doc
        for name, doc in objects(docs, "Deployment").items()
        if doc["metadata"]["labels"]["wuye/service"] == service
        and doc["metadata"]["labels"]["wuye/part"] == "serve"
    }


def backing(docs: list[dict], service_name: str) -> set[str]:
    """The Deployments whose pods a Service selects."""
    selector = objects(docs, "Service")[service_name]["spec"]["selector"]
    return {
        name
        for name, doc in objects(docs, "Deployment").items()
        if selects(selector, doc["spec"]["template"]["metadata"]["labels"])
    }


def test_ordos_runs_every_service_but_iot_city_wide() -> None:
    docs = rendered("ordos")
    deployments = objects(docs, "Deployment")
    for service in CITY_WIDE_SERVICES:
        serve = serve_deployments(docs, service)
        assert list(serve) == [f"{RELEASE}-{service}"], "one city-wide instance"
        env = env_of(pod_spec(serve[f"{RELEASE}-{service}"])["containers"][0])
        assert "WUYE_DISTRICTS" not in env, "the city-wide instance serves every district"
        assert env["WUYE_DISTRICT_ENDPOINT_TEMPLATE"]["value"] == (
            f"{RELEASE}-{service}-{{district}}.wuye.svc:50051"
        )
        assert f"{RELEASE}-{service}-relay" in deployments
        # Every district has its address, served by the city-wide instance for now.
        assert backing(docs, f"{RELEASE}-{service}") == {f"{RELEASE}-{service}"}
        for code in ORDOS_DISTRICTS:
            assert backing(docs, f"{RELEASE}-{service}-{code}") == {f"{RELEASE}-{service}"}
    parts = {
        (doc["metadata"]["labels"]["wuye/service"], doc["metadata"]["labels"]["wuye/part"])
        for doc in deployments.values()
    }
    # What each declaration implies: a server, a relay, its consumers, its timers.
    assert parts == {
        (spec.name, part)
        for spec in SPECS
        for part in (
            "serve",
            "relay",
            *(f"consume-{consumer.name}" for consumer in spec.consumers),
            *(["timers"] if spec.timers else []),
        )
    }
    assert {("credit", "consume-events"), ("credit", "timers"), ("iot", "serve")} <= parts
    hpa = objects(docs, "HorizontalPodAutoscaler")
    assert set(hpa) == {f"{RELEASE}-registry"}, "ordos.yaml autoscales the registry"
    assert "replicas" not in deployments[f"{RELEASE}-registry"]["spec"], "the autoscaler owns it"


@pytest.mark.parametrize("overlay", DISTRICT_OVERLAYS, ids=lambda path: path.stem)
def test_a_district_overlay_gives_that_district_its_own_registry(overlay: Path) -> None:
    code = overlay.stem
    docs = render(CITY_VALUES, overlay)
    wanted = yaml.safe_load(overlay.read_text())["services"]["registry"]["districts"][code]

    serve = serve_deployments(docs, "registry")
    assert set(serve) == {f"{RELEASE}-registry", f"{RELEASE}-registry-{code}"}
    district = serve[f"{RELEASE}-registry-{code}"]
    env = env_of(pod_spec(district)["containers"][0])
    assert env["WUYE_DISTRICTS"]["value"] == code
    city_env = env_of(pod_spec(serve[f"{RELEASE}-registry"])["containers"][0])
    assert city_env["WUYE_DISTRICTS"]["value"] == ",".join(c for c in ORDOS_DISTRICTS if c != code)

    hpa = objects(docs, "HorizontalPodAutoscaler").get(f"{RELEASE}-registry-{code}")
    scaling = wanted.get("autoscaling", {})
    if scaling.get("enabled"):
        assert hpa["spec"]["minReplicas"] == scaling["minReplicas"]
        assert hpa["spec"]["maxReplicas"] == scaling["maxReplicas"]
        assert "replicas" not in district["spec"]
    else:
        assert hpa is None
        assert district["spec"]["replicas"] == wanted["replicas"]
    if "resources" in wanted:
        assert pod_spec(district)["containers"][0]["resources"] == wanted["resources"]

    # The district's address now reaches its own instance; the others' still the city's.
    for other in ORDOS_DISTRICTS:
        expected = f"{RELEASE}-registry-{code}" if other == code else f"{RELEASE}-registry"
        assert backing(docs, f"{RELEASE}-registry-{other}") == {expected}
    assert backing(docs, f"{RELEASE}-registry") == {f"{RELEASE}-registry"}
    # Other services, and the registry's relay, are untouched.
    for service in ("credit", "inspections"):
        assert list(serve_deployments(docs, service)) == [f"{RELEASE}-{service}"]
    assert f"{RELEASE}-registry-relay" in objects(docs, "Deployment")
    # The district's IoT instance stays one pod; the overlay may give it more resources.
    iot = serve_deployments(docs, "iot")[f"{RELEASE}-iot-{code}"]
    assert iot["spec"]["replicas"] == 1
    wanted_iot = (yaml.safe_load(overlay.read_text())["services"].get("iot") or {}).get(
        "districts", {}
    )
    if code in wanted_iot:
        assert pod_spec(iot)["containers"][0]["resources"] == wanted_iot[code]["resources"]


def test_moving_a_district_keeps_its_address_served() -> None:
    """A district moving to its own instance, or back: the pods that served it so far stay
    behind its address until the rollout replaces them, and the replacements do not."""
    city, split = rendered("ordos"), render(CITY_VALUES, DISTRICT_OVERLAYS[0])
    code = DISTRICT_OVERLAYS[0].stem
    address = f"{RELEASE}-registry-{code}"
    for before, after in ((city, split), (split, city)):
        selector = objects(after, "Service")[address]["spec"]["selector"]
        for name in backing(before, address):
            pods = objects(before, "Deployment")[name]["spec"]["template"]["metadata"]["labels"]
            assert selects(selector, pods), f"{name} drops out of {address} before it is replaced"


@pytest.mark.parametrize("name", list(RENDERS))
def test_each_district_address_reaches_exactly_the_pods_serving_it(name: str) -> None:
    docs = rendered(name)
    for service in {d["metadata"]["labels"]["wuye/service"] for d in workloads(docs)}:
        serving: dict[str, set[str]] = {code: set() for code in ORDOS_DISTRICTS}
        for deployment, doc in serve_deployments(docs, service).items():
            env = env_of(pod_spec(doc)["containers"][0])
            served = (
                env["WUYE_DISTRICTS"]["value"].split(",")
                if "WUYE_DISTRICTS" in env
                else ORDOS_DISTRICTS
            )
            for code in served:
                serving[code].add(deployment)
        for code, deployments in serving.items():
            assert backing(docs, f"{RELEASE}-{service}-{code}") == deployments, (
                name,
                service,
                code,
            )
            assert len(deployments) == 1, f"{name}: {service} {code} served by {deployments}"


def test_all_overlays_together_leave_no_city_wide_registry() -> None:
    docs = rendered("ordos+all-districts")
    serve = serve_deployments(docs, "registry")
    assert set(serve) == {f"{RELEASE}-registry-{code}" for code in ORDOS_DISTRICTS}
    assert f"{RELEASE}-registry" not in objects(docs, "Service")
    assert f"{RELEASE}-registry-relay" in objects(docs, "Deployment")


def test_ordos_runs_iot_as_one_pod_per_district() -> None:
    """The IoT intake holds each district's device state in the memory of one pod: nine
    instances of exactly one replica, replaced with Recreate, without autoscaler or budget; its
    relay and consumer city-wide."""
    docs = rendered("ordos")
    serve = serve_deployments(docs, "iot")
    assert set(serve) == {f"{RELEASE}-iot-{code}" for code in ORDOS_DISTRICTS}
    for code in ORDOS_DISTRICTS:
        name = f"{RELEASE}-iot-{code}"
        deployment = serve[name]
        assert deployment["spec"]["replicas"] == 1, name
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}, name
        env = env_of(pod_spec(deployment)["containers"][0])
        assert env["WUYE_DISTRICTS"]["value"] == code
        assert env["WUYE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "wuye-iot-database"
        assert env["WUYE_IOT_GATEWAY_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": "wuye-iot-gateway-keys",
            "key": "current",
        }
        assert env["WUYE_IOT_GATEWAY_PREVIOUS_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": "wuye-iot-gateway-keys",
            "key": "previous",
            "optional": True,
        }
        assert env["WUYE_IOT_MQTT_URL"]["value"] == "mqtt://mosquitto.iot:1883"
        assert backing(docs, f"{RELEASE}-iot-{code}") == {name}
    assert f"{RELEASE}-iot" not in objects(docs, "Service"), "no city-wide instance"
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert not [n for n in objects(docs, kind) if n.startswith(f"{RELEASE}-iot")], kind
    deployments = objects(docs, "Deployment")
    for part, args in (("relay", ["relay"]), ("consume-events", ["consume", "events"])):
        worker = deployments[f"{RELEASE}-iot-{part}"]
        assert worker["metadata"]["labels"]["wuye/district"] == "city"
        container = pod_spec(worker)["containers"][0]
        assert container["args"] == args
        assert "WUYE_DISTRICTS" not in env_of(container)
    assert not [d for d in deployments if d.startswith(f"{RELEASE}-iot-timers")]
    assert f"{RELEASE}-iot-migrate" in objects(docs, "Job")


@pytest.mark.parametrize("name", list(RENDERS))
def test_single_owner_instances_are_one_pod_whatever_the_defaults(name: str) -> None:
    """defaults.serve's replicas, autoscaler and budget never reach a singleOwner instance."""
    docs = rendered(name)
    for service in SINGLE_OWNER_SERVICES:
        serve = serve_deployments(docs, service)
        assert serve, f"{name}: no {service} instance"
        for deployment_name, deployment in serve.items():
            assert deployment["spec"]["replicas"] == 1, deployment_name
            assert deployment["spec"]["strategy"] == {"type": "Recreate"}, deployment_name
        for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
            assert not set(objects(docs, kind)) & set(serve), f"{name}: {kind}"


def test_gateways_reach_iot_from_anywhere_and_iot_reaches_mqtt() -> None:
    """Gateways are outside the cluster: the intake's gRPC port is open to anyone even when the
    other services' callers are narrowed; /metrics stays for Prometheus. With egress restricted,
    the intake may reach the MQTT broker and the others may not."""
    for name in ("ordos", "ordos+restricted-network"):
        policies = objects(rendered(name), "NetworkPolicy")
        iot = policies[f"{RELEASE}-iot"]["spec"]
        grpc_rule, metrics_rule = iot["ingress"]
        assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
        assert "from" not in grpc_rule, f"{name}: gateways must reach iot"
        assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
        assert metrics_rule["from"], f"{name}: metrics open to anyone"
    policies = objects(rendered("ordos+restricted-network"), "NetworkPolicy")
    assert policies[f"{RELEASE}-registry"]["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {}}
    ]

    def egress_ports(policy: dict) -> set[int]:
        assert "Egress" in policy["spec"]["policyTypes"]
        return {port["port"] for rule in policy["spec"]["egress"] for port in rule["ports"]}

    assert egress_ports(policies[f"{RELEASE}-iot"]) == {53, 5432, 9092, 1883}
    for service in CITY_WIDE_SERVICES:
        assert egress_ports(policies[f"{RELEASE}-{service}"]) == {53, 5432, 9092}
    # Unrestricted (the default), no policy limits where pods connect.
    for policy in objects(rendered("ordos"), "NetworkPolicy").values():
        assert policy["spec"]["policyTypes"] == ["Ingress"]


# ---------------------------------------------------------------- every workload


@pytest.mark.parametrize("name", list(RENDERS))
def test_every_container_is_hardened_and_bounded(name: str) -> None:
    for doc in workloads(rendered(name)):
        where = f"{name}: {doc['kind']} {doc['metadata']['name']}"
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] != 0, where
        assert spec["automountServiceAccountToken"] is False, where
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec.get("initContainers", []) + spec["containers"]:
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in security["capabilities"], where
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) >= {"cpu", "memory"}, where
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], where


@pytest.mark.parametrize("name", list(RENDERS))
def test_ports_and_probes(name: str) -> None:
    for doc in workloads(rendered(name)):
        where = f"{name}: {doc['kind']} {doc['metadata']['name']}"
        part = doc["metadata"]["labels"]["wuye/part"]
        container = pod_spec(doc)["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        args = container["args"]
        if part == "serve":
            assert args == ["serve"], where
            assert ports == {"grpc": 50051, "metrics": 9464}, where
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["grpc"] == {"port": 50051}, f"{where}: {probe}"
        elif part == "migrate":
            assert doc["kind"] == "Job" and args == ["migrate"], where
            assert not ports, where
        else:
            assert doc["kind"] == "Deployment", where
            assert args[0] in ("relay", "consume", "timers"), where
            assert part == "-".join(args), where
            assert ports == {"metrics": 9464}, where
        assert container["command"] == [
            "python",
            "-m",
            f"wuye.{doc['metadata']['labels']['wuye/service']}",
        ]


@pytest.mark.parametrize("name", list(RENDERS))
def test_keys_come_from_existing_secrets(name: str) -> None:
    secret_env = {"WUYE_DATABASE_URL", "WUYE_TOKEN_SECRET", "WUYE_PII_KEY", "WUYE_IOT_GATEWAY_KEY"}
    for doc in workloads(rendered(name)):
        where = f"{name}: {doc['metadata']['name']}"
        part = doc["metadata"]["labels"]["wuye/part"]
        env = env_of(pod_spec(doc)["containers"][0])
        for variable in secret_env & set(env):
            assert "value" not in env[variable], f"{where}: {variable} in plain text"
            assert env[variable]["valueFrom"]["secretKeyRef"]["name"], where
        expected = {"WUYE_DATABASE_URL"}
        if part == "serve":
            expected |= {"WUYE_TOKEN_SECRET", "WUYE_PII_KEY"}
            if doc["metadata"]["labels"]["wuye/service"] == "iot":
                expected |= {"WUYE_IOT_GATEWAY_KEY"}
        elif part not in ("relay", "migrate"):
            expected |= {"WUYE_PII_KEY"}
        assert secret_env & set(env) == expected, where


@pytest.mark.parametrize("name", list(RENDERS))
def test_one_migration_job_per_service_as_a_hook(name: str) -> None:
    docs = rendered(name)
    jobs = objects(docs, "Job")
    services = {doc["metadata"]["labels"]["wuye/service"] for doc in workloads(docs)}
    assert set(jobs) == {f"{RELEASE}-{service}-migrate" for service in services}
    for job in jobs.values():
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert pod_spec(job)["restartPolicy"] == "Never"
    for deployment in objects(docs, "Deployment").values():
        assert "migrate" not in pod_spec(deployment)["containers"][0]["args"]


@pytest.mark.parametrize("name", list(RENDERS))
def test_services_policies_autoscalers_and_budgets_match_their_pods(name: str) -> None:
    docs = rendered(name)
    pods = [
        (doc["metadata"]["name"], doc["spec"]["template"]["metadata"]["labels"], pod_spec(doc))
        for doc in workloads(docs)
    ]
    policies = list(objects(docs, "NetworkPolicy").values())
    assert policies, "network policies are on by default"
    for service_name, service in objects(docs, "Service").items():
        assert re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", service_name), service_name
        selector = service["spec"]["selector"]
        chosen = [(n, spec) for n, labels, spec in pods if selects(selector, labels)]
        assert chosen, f"{name}: Service {service_name} selects no pod"
        for pod_name, spec in chosen:
            names = {p["name"] for c in spec["containers"] for p in c.get("ports", [])}
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in names, f"{service_name} -> {pod_name}"
        # Some policy covers these pods and lets the Service's ports in.
        covering = [
            p for p in policies if selects(p["spec"]["podSelector"]["matchLabels"], selector)
        ]
        assert covering, f"{name}: no NetworkPolicy covers Service {service_name}"
        allowed = {
            port["port"]
            for p in covering
            for rule in p["spec"]["ingress"]
            for port in rule["ports"]
        }
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= allowed
    deployments = objects(docs, "Deployment")
    for hpa in objects(docs, "HorizontalPodAutoscaler").values():
        target = deployments[hpa["spec"]["scaleTargetRef"]["name"]]
        assert "replicas" not in target["spec"], "the autoscaler owns the replica count"
    for budget in objects(docs, "PodDisruptionBudget").values():
        selector = budget["spec"]["selector"]["matchLabels"]
        assert [
            d
            for d in deployments.values()
            if selects(selector, d["spec"]["template"]["metadata"]["labels"])
        ]


def test_every_deployment_selector_is_unique() -> None:
    for name in RENDERS:
        deployments = objects(rendered(name), "Deployment").values()
        selectors = [json.dumps(d["spec"]["selector"], sort_keys=True) for d in deployments]
        assert len(selectors) == len(set(selectors)), name


# ---------------------------------------------------------------- monitoring and toggles


def test_service_monitor_scrapes_every_long_running_pod() -> None:
    docs = rendered("ordos")
    (monitor,) = objects(docs, "ServiceMonitor").values()
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]["matchLabels"]
    metrics_services = [
        s for s in objects(docs, "Service").values() if selects(selector, s["metadata"]["labels"])
    ]
    assert {s["metadata"]["labels"]["wuye/service"] for s in metrics_services} == set(SERVICES)
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == "metrics"
    assert {r["targetLabel"] for r in endpoint["relabelings"]} == {
        "wuye_service",
        "wuye_district",
        "wuye_part",
    }
    scraped = {
        d["metadata"]["name"]
        for d in objects(docs, "Deployment").values()
        if any(
            selects(s["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
            for s in metrics_services
        )
    }
    assert scraped == set(objects(docs, "Deployment"))


def test_prometheus_rule_is_the_rules_file(tmp_path: Path) -> None:
    from deploy_support import DEPLOY, run, tool

    (rule,) = objects(rendered("ordos"), "PrometheusRule").values()
    rules_file = DEPLOY / "prometheus" / "rules.yaml"
    assert rule["spec"] == yaml.safe_load(rules_file.read_text())
    assert rules_file.resolve() == (CHART / "files" / "prometheus-rules.yaml").resolve()
    rendered_rules = tmp_path / "rules.yaml"
    rendered_rules.write_text(yaml.safe_dump(rule["spec"]))
    run(tool("promtool"), "check", "rules", rendered_rules)


def test_toggles() -> None:
    off = render(
        sets=(
            'monitoring.serviceMonitor={"enabled": false}',
            'monitoring.prometheusRule={"enabled": false}',
            'networkPolicy={"enabled": false}',
            'services.registry={"enabled": false}',
        )
    )
    kinds = {doc["kind"] for doc in off}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "NetworkPolicy"}
    assert not [d for d in off if d["metadata"]["labels"].get("wuye/service") == "registry"]
    assert [d for d in off if d["metadata"]["labels"].get("wuye/service") == "credit"]


def test_image_digest_wins_over_tag() -> None:
    digest = "sha256:" + "ab" * 32
    docs = render(
        sets=(
            f'image={{"repository": "registry.example/wuye", "tag": "1.0", "digest": "{digest}"}}',
        )
    )
    images = {pod_spec(d)["containers"][0]["image"] for d in workloads(docs)}
    assert images == {f"registry.example/wuye@{digest}"}
