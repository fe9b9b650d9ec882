#!/usr/bin/env bash
# build-images.sh — build the connectors' Docker images (`make images` runs this).
#
#   scripts/build-images.sh                  # both images
#   scripts/build-images.sh source-postgres  # only the named connector(s)
#
# Each image is tagged pgbyte/<connector>:dev and pgbyte/<connector>:<version>, the version being
# the one in <connector>/pyproject.toml (also written into the io.airbyte.version label).
# BASE_IMAGE=... builds on another Python 3.11 base (default: python:3.11-slim, the Dockerfiles'
# own default). The build context is the repository root, because both connectors install the
# local package ./common; .dockerignore keeps the context down to the sources.
# Idempotent: a second run reuses Docker's layer cache and only re-tags.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "build-images: $*" >&2; }
die() { say "error: $*"; exit 1; }

command -v docker >/dev/null 2>&1 \
  || die "the docker command is not installed. Install Docker (Debian: apt-get install docker.io)."
if ! docker info >/dev/null 2>&1; then
  die "no Docker engine answers (docker info failed). Start it (systemctl start docker, or here: \
bash ../shared/tools/docker-up.sh) or point DOCKER_HOST at one."
fi

connectors=("$@")
[ ${#connectors[@]} -gt 0 ] || connectors=(source-postgres destination-postgres)

build_args=()
if [ -n "${BASE_IMAGE:-}" ]; then
  build_args+=(--build-arg "BASE_IMAGE=${BASE_IMAGE}")
fi

for connector in "${connectors[@]}"; do
  [ -f "$connector/Dockerfile" ] || die "no Dockerfile at $connector/Dockerfile (connectors: source-postgres, destination-postgres)"
  version=$(sed -n 's/^version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$connector/pyproject.toml" | head -n 1)
  [ -n "$version" ] || die "no version found in $connector/pyproject.toml"
  image="pgbyte/$connector"
  say "building $image:dev and $image:$version${BASE_IMAGE:+ (base $BASE_IMAGE)}"
  docker build \
    --file "$connector/Dockerfile" \
    --tag "$image:dev" \
    --tag "$image:$version" \
    --build-arg "VERSION=$version" \
    "${build_args[@]}" \
    . \
    || die "docker build of $image failed (see the output above)"
  size=$(docker image inspect --format '{{.Size}}' "$image:dev")
  say "built $image:dev = $image:$version ($((size / 1000000)) MB)"
done
