#!/usr/bin/env bash
# A Temporal server on Postgres, built here from the pinned Go module (the
# production engine; the dev server keeps its state in SQLite).
#
#   scripts/temporal-server.sh build    build temporal-server and temporal-sql-tool once; print their directory
#   scripts/temporal-server.sh schema   create the role and the two databases, bring both schemas up to date
#   scripts/temporal-server.sh run      build, schema, then exec the server with deploy/temporal.yaml
#   scripts/temporal-server.sh namespace   register namespace `default` and Keel's search attributes (idempotent), and wait
#                                          until the server serves them
#   scripts/temporal-server.sh drop-test-databases   drop the databases test servers made (temporal[_visibility]_test_<port>)
#
# The module (deploy/temporal-build/go.mod and go.sum) pins go.temporal.io/server; the binaries and the
# server's SQL schema files are cached in ~/.cache/keel/temporal-<version>, keyed by a stamp of the module
# files and the Go toolchain, so only the first run builds (about 7 minutes on 2 cores with an empty Go cache).
# The server needs Go >= 1.26.10: GOTOOLCHAIN (default go1.27.3) makes the go command fetch that toolchain
# from the module proxy.
#
# Env (names as in deploy/temporal.yaml): POSTGRES_SEEDS (127.0.0.1), DB_PORT (5432), POSTGRES_USER /
# POSTGRES_PWD (temporal / temporal), DBNAME (temporal), VISIBILITY_DBNAME (temporal_visibility),
# FRONTEND_GRPC_PORT (7233), KEEL_TEMPORAL_CACHE (~/.cache/keel). A local Postgres gets the role created
# through `su postgres`; elsewhere the role must exist and may create databases.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODULE=$ROOT/deploy/temporal-build
VERSION=$(awk '$1 == "go.temporal.io/server" { print $2 }' "$MODULE/go.mod")
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
[ "$GOTOOLCHAIN" != local ] || GOTOOLCHAIN=go1.27.3
CACHE=${KEEL_TEMPORAL_CACHE:-$HOME/.cache/keel}/temporal-$VERSION
export POSTGRES_SEEDS=${POSTGRES_SEEDS:-127.0.0.1} DB_PORT=${DB_PORT:-5432}
export POSTGRES_USER=${POSTGRES_USER:-temporal} POSTGRES_PWD=${POSTGRES_PWD:-temporal}
export DBNAME=${DBNAME:-temporal} VISIBILITY_DBNAME=${VISIBILITY_DBNAME:-temporal_visibility}

log() { echo "temporal-server: $*" >&2; }
die() { echo "temporal-server: $*" >&2; exit 1; }

[ -n "$VERSION" ] || die "no go.temporal.io/server requirement in $MODULE/go.mod"

build() {
  local stamp
  stamp=$(cat "$MODULE/go.mod" "$MODULE/go.sum" <(echo "$GOTOOLCHAIN") | sha256sum | cut -c1-16)
  mkdir -p "$CACHE"
  # One build at a time (two test runs may start together); the loser finds the stamp written.
  exec 9>"$CACHE/.lock"
  flock 9
  if [ "$(cat "$CACHE/stamp" 2>/dev/null)" != "$stamp" ]; then
    command -v go >/dev/null || die "the Go command is needed to build the server (Debian: apt-get install golang-go)"
    log "building go.temporal.io/server $VERSION with $GOTOOLCHAIN into $CACHE (minutes, once)"
    rm -f "$CACHE/stamp"
    (cd "$MODULE" && go build -o "$CACHE/temporal-server" go.temporal.io/server/cmd/server \
      && go build -o "$CACHE/temporal-sql-tool" go.temporal.io/server/cmd/tools/sql)
    # The versioned SQL schema ships in the server module, not in the tool.
    local src
    src=$(cd "$MODULE" && go list -m -f '{{.Dir}}' go.temporal.io/server)
    rm -rf "$CACHE/schema" && cp -r "$src/schema/postgresql" "$CACHE/schema" && chmod -R u+w "$CACHE/schema"
    echo "$stamp" > "$CACHE/stamp"
  fi
  flock -u 9
  echo "$CACHE"
}

local_postgres() { [ "$POSTGRES_SEEDS" = 127.0.0.1 ] || [ "$POSTGRES_SEEDS" = localhost ]; }
psql_admin() { su postgres -c "psql -qAtX -c \"$1\""; }
# The sql tool logs every statement: show its output only when it fails.
quiet() { local out; out=$("$@" 2>&1) || { echo "$out" >&2; return 1; }; }

# A local Postgres gets the server's role here (a fresh machine has none); elsewhere it must exist.
ensure_role() {
  if local_postgres && [ "$(id -u)" = 0 ]; then
    [ "$(psql_admin "select 1 from pg_roles where rolname='$POSTGRES_USER'")" = 1 ] \
      || psql_admin "create role $POSTGRES_USER login createdb password '$POSTGRES_PWD'"
  fi
}

schema() {
  build >/dev/null
  ensure_role
  local sql=(
    "$CACHE/temporal-sql-tool" --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT"
    -u "$POSTGRES_USER" --pw "$POSTGRES_PWD"
  )
  local db kind
  for kind in temporal visibility; do
    if [ $kind = temporal ]; then db=$DBNAME; else db=$VISIBILITY_DBNAME; fi
    # The tool's database check: connecting to a database that is missing fails.
    if ! PGPASSWORD=$POSTGRES_PWD psql -qAtX -h "$POSTGRES_SEEDS" -p "$DB_PORT" -U "$POSTGRES_USER" -d "$db" -c 'select 1' >/dev/null 2>&1; then
      log "creating database $db"
      quiet "${sql[@]}" --db "$db" create-database
      quiet "${sql[@]}" --db "$db" setup-schema -v 0.0
    fi
    quiet "${sql[@]}" --db "$db" update-schema -d "$CACHE/schema/v12/$kind/versioned"
  done
}

case "${1:-}" in
  build) build ;;
  schema) schema ;;
  run)
    schema
    cd "$ROOT"
    export DYNAMIC_CONFIG_FILE_PATH=${DYNAMIC_CONFIG_FILE_PATH:-$ROOT/deploy/temporal-dynamic-config.yaml}
    exec "$CACHE/temporal-server" --config-file "$ROOT/deploy/temporal.yaml" --allow-no-auth start
    ;;
  namespace)
    # Keel's search attributes (common/search-attributes.ts): sessions carry them once they are registered.
    register_search_attributes() {
      local listed name
      listed=$("$1" operator search-attribute list --address "$2" -n default 2>/dev/null) || return 1
      for name in KeelTenant KeelStatus KeelModel; do
        [[ $listed == *"$name"* ]] && continue
        "$1" operator search-attribute create --address "$2" -n default --name "$name" --type Keyword >/dev/null 2>&1 \
          || return 1
      done
    }
    # The dev server makes `default` itself; a real server starts with none. The Temporal CLI comes from setup.sh.
    cli=${TEMPORAL_CLI:-$(command -v temporal || echo "$ROOT/.keel/tools/venv/bin/temporal")}
    [ -x "$cli" ] || die "no Temporal CLI: run npm run setup, or set TEMPORAL_CLI"
    address=127.0.0.1:${FRONTEND_GRPC_PORT:-7233}
    # The frontend listens before history and matching have joined it ("Not enough hosts to serve the
    # request"): retry for up to a minute, until a lookup in each of them answers.
    probe=keel-readiness-probe
    for _ in $(seq 1 60); do
      if "$cli" operator namespace describe --address "$address" -n default >/dev/null 2>&1 \
        || "$cli" operator namespace create --address "$address" -n default --retention 72h >/dev/null 2>&1; then
        answer=$("$cli" workflow describe --address "$address" -w $probe 2>&1 || true)
        [[ $answer == *"workflow not found"* ]] \
          && "$cli" task-queue describe --address "$address" --task-queue $probe >/dev/null 2>&1 \
          && register_search_attributes "$cli" "$address" && exit 0
      fi
      sleep 1
    done
    die "namespace default at $address is not served after a minute"
    ;;
  drop-test-databases)
    # The cluster suite gives each test server its own pair, temporal[_visibility]_test_<port>.
    ensure_role
    export PGPASSWORD=$POSTGRES_PWD
    psql -qAtX -h "$POSTGRES_SEEDS" -p "$DB_PORT" -U "$POSTGRES_USER" -d postgres \
      -c "select datname from pg_database where datname ~ '^temporal(_visibility)?_test_[0-9]+$'" |
      while read -r db; do psql -qAtX -h "$POSTGRES_SEEDS" -p "$DB_PORT" -U "$POSTGRES_USER" -d postgres -c "drop database \"$db\""; done
    ;;
  *) die "usage: $0 build | schema | run | namespace | drop-test-databases" ;;
esac
