#!/usr/bin/env bash
# Build the Keel sandbox image without a container registry:
# debootstrap a minimal Debian, add the keel user and the executor, `docker import`.
#
# Usage: bash sandbox/build-rootfs.sh <tag>
# Env:   KEEL_CACHE_DIR      where the debootstrap tarball is cached (default ~/.cache/keel)
#        KEEL_DEBIAN_MIRROR  Debian mirror (default http://deb.debian.org/debian)
set -euo pipefail

tag=${1:?usage: build-rootfs.sh <image tag>}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Keep this list in step with the Dockerfile.
suite=bookworm
packages=bash,coreutils,python3,git,ca-certificates,procps
mirror=${KEEL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache_dir=${KEEL_CACHE_DIR:-$HOME/.cache/keel}

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "build-rootfs: debootstrap is not installed. Install it with: apt-get install debootstrap" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "build-rootfs: debootstrap needs root (run as root, or with sudo)." >&2
  exit 1
fi
if ! docker info >/dev/null 2>&1; then
  echo "build-rootfs: cannot reach the Docker daemon (DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock})." >&2
  exit 1
fi

# The cached base depends only on what debootstrap is asked for, so a change to
# the executor alone rebuilds in seconds.
key=$(printf '%s\n' "$suite" minbase "$packages" | sha256sum | cut -c1-16)
base="$cache_dir/rootfs-$suite-$key.tar"

work=$(mktemp -d "${TMPDIR:-/tmp}/keel-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root" "$cache_dir"

if [ -f "$base" ]; then
  echo "build-rootfs: using cached base $base" >&2
  tar -C "$root" --numeric-owner -xf "$base"
else
  echo "build-rootfs: debootstrap $suite ($packages); this takes about a minute" >&2
  debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >&2
  # Apt caches and lists are dead weight in the sandbox.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/*
  tar -C "$root" --numeric-owner -cf "$base.partial.$$" .
  mv -f "$base.partial.$$" "$base"
fi

# The keel user (uid/gid 1000), written directly so no chroot is needed.
grep -q '^keel:' "$root/etc/group" || echo 'keel:x:1000:' >>"$root/etc/group"
grep -q '^keel:' "$root/etc/passwd" || echo 'keel:x:1000:1000:Keel sandbox:/home/keel:/bin/bash' >>"$root/etc/passwd"
grep -q '^keel:' "$root/etc/shadow" || echo 'keel:!:19000:0:99999:7:::' >>"$root/etc/shadow"
mkdir -p "$root/home/keel" "$root/workspace" "$root/opt/keel"
chown 1000:1000 "$root/home/keel" "$root/workspace"
chmod 0755 "$root/home/keel" "$root/workspace"
# The executor: the launcher and its package (only the .py files: never a local __pycache__).
install -m 0755 -o 0 -g 0 "$here/executor.py" "$root/opt/keel/executor.py"
install -d -m 0755 -o 0 -g 0 "$root/opt/keel/keel_executor"
install -m 0644 -o 0 -g 0 -t "$root/opt/keel/keel_executor" "$here"/keel_executor/*.py
# The egress proxy a networked session's proxy container runs (host/egress.ts).
install -m 0644 -o 0 -g 0 "$here/egress_proxy.py" "$root/opt/keel/egress_proxy.py"

recipe=${tag##*:}  # the recipe hash (see recipeHash in the TypeScript image module)
echo "build-rootfs: importing $tag" >&2
tar -C "$root" --numeric-owner -c . | docker import \
  --change 'USER keel' \
  --change 'WORKDIR /workspace' \
  --change 'ENV HOME=/home/keel USER=keel LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "LABEL keel.recipe=$recipe keel.build=debootstrap" \
  --change 'CMD ["python3","-u","/opt/keel/executor.py"]' \
  - "$tag" >/dev/null
echo "build-rootfs: built $tag" >&2
