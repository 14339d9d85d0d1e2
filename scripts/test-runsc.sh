#!/usr/bin/env bash
# The runsc suite: the sandbox, snapshot, durability and disk-quota integration tests, the security
# suite (test/security: where gVisor differs, the test says so) and the gVisor tests, with every sandbox under gVisor (KEEL_SANDBOX_RUNTIME=runsc; the tests and the workers they
# spawn read it). Run via `npm run test:runsc`, which registers runsc first (KEEL_GVISOR=1 setup), and
# by .ci/run. Prints the suite's time.
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
export DATABASE_URL=${KEEL_TEST_DATABASE_URL:-postgres://keel:keel@localhost:5432/keel_test}
export KEEL_SANDBOX_RUNTIME=runsc
start=$(date +%s)
status=0
node --import tsx --test --test-concurrency=1 --test-reporter=spec \
  test/runsc/*.test.ts test/integration/sandbox.test.ts test/integration/snapshots.test.ts \
  test/integration/durability.test.ts test/integration/disk-quota.test.ts test/security/*.test.ts || status=$?
echo "== runsc suite: $(( $(date +%s) - start ))s (status $status)"
exit "$status"
