"""Write what derives from the services' declarations (services/<name>/service.py) into the files
that cannot run Python: the services of the chart's values and the schema's list of them, the
dashboard's service variable, and the services of the operators' README.

    python tools/gendeploy.py           rewrite those files
    python tools/gendeploy.py --check   exit 1 naming each file that differs (tests/deploy)

Generated parts sit between `BEGIN generated: <name>` and `END generated: <name>` markers; the
rest of each file is written by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from wuye.core.catalog import load_specs
from wuye.core.service import ServiceSpec

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python tools/gendeploy.py"
VALUES = Path("charts/wuye/values.yaml")
SCHEMA = Path("charts/wuye/values.schema.json")
DASHBOARD = Path("deploy/grafana/wuye.json")
README = Path("deploy/README.md")


def chart_values(spec: ServiceSpec) -> dict:
    """services.<name> of the chart's values: every part the declaration implies, empty where
    ordos.yaml and the defaults size it."""
    values: dict = {"enabled": True}
    if spec.single_owner:
        values["singleOwner"] = True
    values |= {
        "serve": {},
        "districts": {},
        "relay": {},
        "consumers": {consumer.name: {} for consumer in spec.consumers},
        "timers": {"enabled": bool(spec.timers)},
        "calls": list(spec.calls),
        "env": {},
    }
    values |= spec.chart_values
    return values


def _region(text: str, name: str, comment: str, body: str, path: Path) -> str:
    """`text` with the lines between the markers of region `name` replaced by `body`."""
    begin, end = f"{comment} BEGIN generated: {name}", f"{comment} END generated: {name}"
    markers = rf"^({re.escape(begin)}[^\n]*\n).*?^({re.escape(end)}[^\n]*)$"
    pattern = re.compile(markers, re.M | re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path} lacks the lines '{begin}' and '{end}'")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text, count=1)


def values_yaml(text: str, specs: tuple[ServiceSpec, ...]) -> str:
    services = {"services": {spec.name: chart_values(spec) for spec in specs}}
    body = yaml.safe_dump(
        services, sort_keys=False, default_flow_style=None, width=100, allow_unicode=True
    )
    return _region(text, "services", "#", body, VALUES)


def values_schema(text: str, specs: tuple[ServiceSpec, ...]) -> str:
    schema = json.loads(text)
    names = [spec.name for spec in specs]
    schema["properties"]["services"]["propertyNames"] = {"enum": names}
    schema["$defs"]["service"]["properties"]["calls"] = {
        "type": "array",
        "description": "Services this one calls over gRPC: its pods get their addresses "
        "(WUYE_SERVICE_ENDPOINTS).",
        "uniqueItems": True,
        "items": {"enum": names},
    }
    return json.dumps(schema, indent=2) + "\n"


def dashboard(text: str, specs: tuple[ServiceSpec, ...]) -> str:
    board = json.loads(text)
    names = [spec.name for spec in specs]
    everything = {"selected": True, "text": "All", "value": "$__all"}
    variable = {
        "name": "service",
        "label": "Service",
        "type": "custom",
        "query": ",".join(names),
        "multi": True,
        "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [everything]
        + [{"selected": False, "text": name, "value": name} for name in names],
    }
    board["templating"]["list"] = [
        variable if item["name"] == "service" else item for item in board["templating"]["list"]
    ]
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def _parts(spec: ServiceSpec) -> str:
    consumers = ", ".join(f"`consume {consumer.name}`" for consumer in spec.consumers)
    return "; ".join(
        part
        for part in (
            "`serve` (one pod per instance)" if spec.single_owner else "`serve`",
            "`relay`",
            consumers,
            "`timers`" if spec.timers else "",
        )
        if part
    )


def readme(text: str, specs: tuple[ServiceSpec, ...]) -> str:
    rows = [
        f"| `{spec.name}` | {_parts(spec)} | "
        f"{', '.join(f'`{callee}`' for callee in spec.calls) or '-'} |"
        for spec in specs
    ]
    table = "\n".join(["| service | parts | calls |", "|---|---|---|", *rows]) + "\n"
    text = _region(text, "services", "<!--", table, README)
    names = " ".join(spec.name for spec in specs)
    loop = f"""```sh
kubectl create namespace wuye
for service in {names}; do
  kubectl -n wuye create secret generic wuye-$service-database \\
    --from-literal=url="postgresql://wuye_$service:PASSWORD@postgres.db.svc:5432/wuye_$service"
done
```
"""
    return _region(text, "database-secrets", "<!--", loop, README)


GENERATORS: dict[Path, Callable[[str, tuple[ServiceSpec, ...]], str]] = {
    VALUES: values_yaml,
    SCHEMA: values_schema,
    DASHBOARD: dashboard,
    README: readme,
}


def generate(root: Path) -> dict[Path, tuple[str, str]]:
    """(committed, generated) text of every file, by path relative to `root`."""
    specs = load_specs()
    found = {}
    for path, make in GENERATORS.items():
        committed = (root / path).read_text()
        found[path] = (committed, make(committed, specs))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    stale = {path: new for path, (old, new) in generate(ROOT).items() if old != new}
    for path, new in stale.items():
        if args.check:
            print(f"{path} differs from the services' declarations: run `{COMMAND}`")
        else:
            (ROOT / path).write_text(new)
            print(f"wrote {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
