#!/usr/bin/env bash
# Builds the Wuye image with buildah (daemonless, rootless works) from the repository root.
#   docker/build.sh [IMAGE]          default IMAGE: localhost/wuye:<version in pyproject.toml>
# Needs the base image reachable (a registry or a mirror: BASE_IMAGE=... overrides the pinned
# one). Push with `buildah push IMAGE docker://REGISTRY/wuye:TAG`, then set image.repository
# and image.tag (or image.digest) in the Helm values.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$root/pyproject.toml" | head -n1)
image=${1:-localhost/wuye:$version}

command -v buildah >/dev/null || {
  echo "buildah is not installed (Debian/Ubuntu: apt-get install buildah)" >&2
  exit 1
}
build_args=()
if [[ -n ${BASE_IMAGE:-} ]]; then build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE"); fi

buildah build \
  --file "$root/docker/Dockerfile" \
  --ignorefile "$root/docker/Dockerfile.dockerignore" \
  --layers \
  --tag "$image" \
  "${build_args[@]}" \
  "$root"

# Smoke test: as the non-root user, every service's entry point imports (generated code
# included) and answers --help without a database.
container=$(buildah from "$image")
trap 'buildah rm "$container" >/dev/null' EXIT
for service in $(cd "$root/services" && ls -d -- */__main__.py | cut -d/ -f1); do
  buildah run --user 10001:10001 "$container" -- python -m "wuye.$service" --help >/dev/null
done
echo "built $image ($(buildah images --format '{{.Size}}' "$image" | head -n1))"
