#!/usr/bin/env bash
# Runs the JavaScript client's whole test suite the way CI does: installs the
# dependencies from package-lock.json (npm ci) into a scratch copy of the
# package, builds it, then runs the Node tests and the headless-Chromium test
# against the ringpushd binary named by $RINGPUSHD.
#
# Exit: 0 all passed, 1 a failure, 77 skipped (node or npm is missing).
# Environment: RINGPUSHD (required for the tests to run), RP_JS_WORKDIR (scratch
# directory; default a temporary one, removed afterwards), CHROMIUM.
set -euo pipefail
pkg="$(cd "$(dirname "$0")/.." && pwd)"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "SKIP: node and npm are needed for the JavaScript client tests"
  exit 77
fi
if [ ! -x "${RINGPUSHD:-}" ]; then
  echo "ringpushd not found: set RINGPUSHD to the server binary" >&2
  exit 1
fi
export RINGPUSHD

work="${RP_JS_WORKDIR:-}"
if [ -z "$work" ]; then
  work="$(mktemp -d -t rpjs-ci-XXXXXX)"
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
# A copy, so that the source tree's node_modules and dist stay untouched.
for f in package.json package-lock.json tsconfig.json src test demo; do
  rm -rf "${work:?}/$f"
  cp -R "$pkg/$f" "$work/$f"
done
cd "$work"

echo "== npm ci (node $(node --version))"
npm ci --no-audit --no-fund --loglevel=error
echo "== build"
npm run --silent build
echo "== Node tests"
rc=0
node --test --test-concurrency=1 test/*.test.mjs || rc=1
echo "== browser test"
node --test test/browser/*.test.mjs || rc=1
exit $rc
