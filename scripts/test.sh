#!/usr/bin/env bash
# Runs the whole test suite: type check, unit tests, then integration tests on a
# real Temporal dev server, real Docker and real Postgres. Run via `npm test`,
# which runs scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
export DATABASE_URL=${KEEL_TEST_DATABASE_URL:-postgres://keel:keel@localhost:5432/keel_test}
echo "== type check"
npx tsc -p tsconfig.json --noEmit
echo "== tests (unit, integration, then security)"
# One file at a time: integration tests share the Docker engine and a 2-core machine.
node --import tsx --test --test-concurrency=1 --test-reporter=spec test/unit/*.test.ts test/integration/*.test.ts test/security/*.test.ts
