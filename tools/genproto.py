"""Generate Python modules from protos/ into services/<service>/v1 (import path wuye.<service>.v1).

protoc names output files after the proto path (wuye/registry/v1/...), while the import package
`wuye` lives in services/; so we generate into a scratch folder and move each file into place.
Runs only when a .proto is newer than what was generated.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
SERVICES = ROOT / "services"
STAMP = ".generated"


def _includes() -> list[str]:
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    # google/type/*.proto ship with googleapis-common-protos, next to the google package.
    site = Path(grpc_tools.__file__).parent.parent
    return [f"-I{PROTOS}", f"-I{well_known}", f"-I{site}"]


def _outdated(protos: list[Path]) -> bool:
    newest = max(p.stat().st_mtime for p in [*protos, Path(__file__)])
    for package_dir in {p.parent for p in protos}:
        stamp = SERVICES / package_dir.relative_to(PROTOS / "wuye") / STAMP
        if not stamp.exists() or stamp.stat().st_mtime < newest:
            return True
    return False


def main() -> int:
    protos = sorted(PROTOS.rglob("*.proto"))
    if not protos:
        return 0
    if not _outdated(protos) and "--force" not in sys.argv:
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        args = [
            "protoc",
            *_includes(),
            f"--python_out={scratch}",
            f"--pyi_out={scratch}",
            f"--grpc_python_out={scratch}",
            *[str(p.relative_to(PROTOS)) for p in protos],
        ]
        if protoc.main(args) != 0:
            print("protoc failed", file=sys.stderr)
            return 1
        generated = Path(scratch) / "wuye"
        for package_dir in sorted({p.parent for p in generated.rglob("*.py*")}):
            target = SERVICES / package_dir.relative_to(generated)
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(package_dir, target)
            (target / "__init__.py").touch()
            (target / STAMP).touch()
    print(f"generated Python code for {len(protos)} proto files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
