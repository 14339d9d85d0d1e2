#!/usr/bin/env bash
# The cluster suite (`npm run test:cluster`): the crash, durability, restart, shutdown and chaos tests against
# the production engine, a Temporal server on Postgres built by scripts/temporal-server.sh (the first run builds
# it, minutes; later runs start it in seconds), with the chaos run on two session-worker processes and two
# sandbox hosts that each have their own dockerd. Budget: about 15 minutes on 2 cores. Needs root (dockerd).
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
export DATABASE_URL=${KEEL_TEST_DATABASE_URL:-postgres://keel:keel@localhost:5432/keel_test}
export KEEL_TEST_TEMPORAL=cluster
started=$(date +%s)
trap 'echo "test:cluster: $(( $(date +%s) - started )) s"' EXIT
bash scripts/temporal-server.sh build >/dev/null
# Each test file's server has its own databases (test/helpers/temporal.ts); drop those of earlier runs.
bash scripts/temporal-server.sh drop-test-databases
node --import tsx --test --test-concurrency=1 --test-reporter=spec \
  test/integration/crash.test.ts test/integration/durability.test.ts test/integration/restart.test.ts \
  test/integration/shutdown.test.ts test/cluster/*.test.ts
