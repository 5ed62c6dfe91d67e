#!/usr/bin/env bash
# Install safehaven with its test tools, find or start PostgreSQL, then lint, type-check and
# run every test.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh test
if url=$(scripts/ensure-postgres.sh); then
  export SAFEHAVEN_TEST_PG_URL="${SAFEHAVEN_TEST_PG_URL:-$url}"
else
  echo "WARNING: PostgreSQL is unavailable; PostgreSQL tests will be SKIPPED" >&2
fi
if ! scripts/ensure-java.sh; then
  echo "WARNING: no Java runtime; Spark tests will be SKIPPED" >&2
fi
# Browser tests drive Debian's chromium (never a browser Playwright downloads).
scripts/ensure-chromium.sh || echo "WARNING: no Chromium; browser tests will be SKIPPED" >&2
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
.venv/bin/mypy benchmarks  # strict too: benchmark figures are cited in the docs
scripts/security.sh
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
# pytest exit 5 means "no tests collected": that is a failure of the suite, not a pass.
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$status"
