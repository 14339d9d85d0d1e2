#!/usr/bin/env bash
# Build the Keel sandbox image under the given tag.
#
# Usage: bash sandbox/build.sh <tag>
# Env:   KEEL_IMAGE_BUILD=dockerfile|debootstrap  force a method. By default the
#        Dockerfile is used only when debian:bookworm-slim can be pulled quickly.
set -euo pipefail

tag=${1:?usage: build.sh <image tag>}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
method=${KEEL_IMAGE_BUILD:-}

if [ -z "$method" ]; then
  method=debootstrap
  if docker image inspect debian:bookworm-slim >/dev/null 2>&1 \
    || timeout 10 docker pull debian:bookworm-slim >/dev/null 2>&1; then
    method=dockerfile
  fi
fi

case "$method" in
  dockerfile)
    echo "build: docker build -t $tag (Dockerfile)" >&2
    # The tag's suffix is the recipe hash (host/image.ts computes it over every file here).
    docker build --label "keel.recipe=${tag##*:}" --label keel.build=dockerfile -t "$tag" "$here" >&2
    ;;
  debootstrap)
    exec bash "$here/build-rootfs.sh" "$tag"
    ;;
  *)
    echo "build: KEEL_IMAGE_BUILD must be 'dockerfile' or 'debootstrap' (got '$method')" >&2
    exit 2
    ;;
esac
