"""Alert rules and the dashboard: promtool checks and unit tests, a runbook per alert, and every
metric they use is one the running services really export (scraped from `python -m wuye run`)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
import yaml
from deploy_support import DEPLOY, run, tool
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.deploy

RULES = DEPLOY / "prometheus" / "rules.yaml"
RULE_TESTS = DEPLOY / "prometheus" / "rules.test.yaml"
DASHBOARD = DEPLOY / "grafana" / "wuye.json"
README = DEPLOY / "README.md"
# Labels Prometheus adds to every series of a target: its own and the chart's relabelings.
TARGET_LABELS = {
    "job",
    "instance",
    "namespace",
    "pod",
    "service",
    "container",
    "endpoint",
    "wuye_service",
    "wuye_district",
    "wuye_part",
}
# Series Prometheus makes itself rather than scraping them.
SYNTHETIC = {"up"}
STARTUP_SECONDS = 60


def rules() -> list[dict]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def alerts() -> dict[str, dict]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def dashboard_variable_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]


# ---------------------------------------------------------------- promtool


def test_promtool_check_rules() -> None:
    result = run(tool("promtool"), "check", "rules", RULES)
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run(tool("promtool"), "test", "rules", RULE_TESTS)
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for name in alerts():
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name} is never shown firing"
        assert any(not case["exp_alerts"] for case in mine), f"{name} is never shown quiet"


def test_every_alert_has_a_runbook_in_the_readme() -> None:
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in README.read_text().splitlines()
        if line.startswith("#")
    }
    for name, rule in alerts().items():
        runbook = rule["annotations"]["runbook"]
        assert runbook == f"deploy/README.md#{name.lower()}", name
        assert name.lower() in headings, f"deploy/README.md has no section {name}"
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert {"summary", "description"} <= set(rule["annotations"]), name


# ---------------------------------------------------------------- the dashboard


def test_dashboard_shape() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "wuye"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "service", "district"} <= variables
    titles = " ".join(p["title"].lower() for p in board["panels"])
    for topic in (
        "calls per second",
        "failed",
        "latency",
        "published",
        "consumed",
        "backlog",
        "lag",
        "iot readings per second",
        "iot batch size",
        "iot ack latency",
        "iot alarms",
        "iot alarm latency",
        "iot silent devices",
    ):
        assert topic in titles, topic
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
    # Traffic, errors and latency are shown per service and per district instance.
    for expr in dashboard_exprs():
        if "grpc_server_" in expr:
            assert 'wuye_district=~"$district"' in expr, expr
            if "topk" not in expr and "by (" in expr:
                assert "wuye_district" in expr.split("by (")[1].split(")")[0], expr


# ---------------------------------------------------------------- metric names are real

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_IDENTIFIER = re.compile(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads (functions, keywords and labels left out)."""
    text = _GROUPING.sub(" ", expr)
    text = re.sub(r"\{[^}]*\}", " ", _STRINGS.sub('""', text))
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\$\w+", " ", text)
    return {
        name
        for name in _IDENTIFIER.findall(text)
        if name.lower() not in _KEYWORDS and not re.fullmatch(r"\d+[smhdwy]?", name)
    }


def matchers(expr: str) -> list[tuple[str, set[str]]]:
    """(series name, label names it is matched on) for each `name{...}` in an expression."""
    found = []
    for name, body in _SELECTOR.findall(expr):
        body = _STRINGS.sub('""', body)
        found.append((name, {m.group(1) for m in re.finditer(r"(\w+)\s*(?:=~|!~|!=|=)", body)}))
    return found


def test_metric_name_parser() -> None:
    expr = (
        'sum by (le, wuye_service) (rate(a_bucket{x="1", y=~"$v|w"}[5m])) / on (z) b_total '
        "unless c offset 15m > 0.5 and histogram_quantile(0.9, d) or wuye:e:rate5m"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d", "wuye:e:rate5m"}
    assert matchers(expr) == [("a_bucket", {"x", "y"})]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict]]:
    """Every series name the platform's processes serve on /metrics, with the label names its
    samples carry, scraped from `python -m wuye run` (SQLite, its own Kafka, free ports), each
    part in a process of its own as in production."""
    state = tmp_path_factory.mktemp("platform") / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WUYE_")}
    output = state.parent / "launcher.out"
    with output.open("wb") as out:
        command = [sys.executable, "-m", "wuye", "run", "--state-dir", str(state)]
        command += ["--kafka-port", "0", "--grpc-port", "0", "--metrics-port", "0"]
        command += ["--separate-parts"]
        launcher = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        platform_file = state / "platform.json"
        deadline = time.monotonic() + STARTUP_SECONDS
        while not platform_file.exists():
            if launcher.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the platform did not start:\n{output.read_text(errors='replace')}")
            time.sleep(0.1)
        platform = json.loads(platform_file.read_text())
        # One call per server (refused: no token), so that the RPC series have samples.
        for address in platform["grpc"].values():
            with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError):
                channel.unary_unary(_first_method(channel))(b"", timeout=5)
        series: dict[str, dict] = {}
        for process in platform["processes"]:
            url = f"http://{process['metrics']}/metrics"
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            for family in text_string_to_metric_families(text):
                names = _series_of(family.name, family.type)
                for name in names:
                    entry = series.setdefault(name, {"labels": set(), "processes": set()})
                    entry["processes"].add(process["name"])
                for sample in family.samples:
                    series.setdefault(sample.name, {"labels": set(), "processes": set()})
                    series[sample.name]["labels"] |= set(sample.labels)
        yield series
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(30)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.wait()


def _first_method(channel: grpc.Channel) -> str:
    """The first method of the server's own service, found through reflection."""
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    database = ProtoReflectionDescriptorDatabase(channel)
    (service,) = [s for s in database.get_services() if s.startswith("wuye.")]
    method = DescriptorPool(database).FindServiceByName(service).methods[0]
    return f"/{service}/{method.name}"


def _series_of(family: str, kind: str) -> set[str]:
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("_count", "_sum", "_created", ""),
        "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    }.get(kind, ("",))
    return {family + suffix for suffix in suffixes}


def declared_label_names() -> dict[str, set[str]]:
    """Label names of the metrics the platform's code declares (wuye.core and every module of
    every service `python -m wuye run` starts), by series name: samples of a labelled family
    appear only once something happened, so the scrape alone cannot tell them."""
    import importlib
    import pkgutil

    from prometheus_client import REGISTRY, Counter, Histogram

    from wuye.core.catalog import service_names

    importlib.import_module("wuye.core.metrics")
    for service in service_names():
        package = importlib.import_module(f"wuye.{service}")
        for module in pkgutil.iter_modules(package.__path__):
            if module.name not in ("__main__", "migrations"):
                importlib.import_module(f"wuye.{service}.{module.name}")
    labels: dict[str, set[str]] = {}
    for value in list(REGISTRY._collector_to_names):
        if not hasattr(value, "_labelnames"):
            continue
        names = set(value._labelnames)
        base = value._name
        if isinstance(value, Counter):
            labels[f"{base}_total"] = names
        elif isinstance(value, Histogram):
            labels[f"{base}_bucket"] = names | {"le"}
            labels[f"{base}_count"] = labels[f"{base}_sum"] = names
        else:
            labels[base] = names
    return labels


def used_expressions() -> list[tuple[str, str]]:
    found = [(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for r in rules()]
    found += [(f"dashboard: {e[:60]}", e) for e in dashboard_exprs()]
    # label_values(<selector>, label): only the selector names a series.
    found += [
        ("dashboard variable", q.split("(", 1)[1].rsplit(",", 1)[0])
        for q in dashboard_variable_queries()
    ]
    return found


# The IoT intake's own series and the part that serves them: its servers (one per district
# instance, where the device state lives) and its relay (which publishes the alarms).
IOT_SERIES = {
    "iot serve": {
        "wuye_iot_readings_total",
        "wuye_iot_batches_total",
        "wuye_iot_batch_readings_bucket",
        "wuye_iot_ack_latency_seconds_bucket",
        "wuye_iot_alarms_total",
        "wuye_iot_devices",
        "wuye_iot_devices_silent",
        "wuye_iot_readings_retention_seconds",
    },
    "iot relay": {
        "wuye_iot_alarm_latency_seconds_bucket",
        "wuye_iot_alarm_forward_latency_seconds_bucket",
    },
}


def test_rules_and_dashboard_use_only_exported_metrics(exported: dict[str, dict]) -> None:
    known = set(exported) | recorded() | SYNTHETIC
    for where, expr in used_expressions():
        unknown = metric_names(expr) - known
        assert not unknown, f"{where} uses {sorted(unknown)}, which no process exports"
    # What the IoT rules and panels read comes from the part they assume.
    used = {name for _, expr in used_expressions() for name in metric_names(expr)}
    assert {name for names in IOT_SERIES.values() for name in names} <= used
    for process, names in IOT_SERIES.items():
        for name in names:
            assert process in exported[name]["processes"], f"{name} is not served by {process}"


def test_rules_and_dashboard_match_only_real_labels(exported: dict[str, dict]) -> None:
    declared = declared_label_names()
    for where, expr in used_expressions():
        for name, labels in matchers(expr):
            if name in SYNTHETIC or name in recorded():
                real = set()
            else:
                real = exported[name]["labels"] | declared.get(name, set())
            unknown = labels - real - TARGET_LABELS
            assert not unknown, f"{where}: {name} has no label {sorted(unknown)}"


def test_every_process_exports_the_pipeline_metrics(exported: dict[str, dict]) -> None:
    """What the alerts read is served by every kind of process (serve, relay, consume, timers)."""
    parts = {p for entry in exported.values() for p in entry["processes"]}
    assert {"registry serve", "registry relay", "credit consume events", "credit timers"} <= parts
    for name in (
        "grpc_server_handled_total",
        "wuye_outbox_oldest_event_age_seconds",
        "wuye_consumer_lag_records",
        "wuye_consumer_events_total",
    ):
        assert exported[name]["processes"] == parts, name
