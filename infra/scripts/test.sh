#!/usr/bin/env bash
# The whole test suite: once on SQLite, then on PostgreSQL.
# PostgreSQL comes from TEST_DATABASE_URL, else the local server on 127.0.0.1:5432
# (database "test"); it is skipped with a notice when unreachable, unless
# CAPSHARE_REQUIRE_POSTGRES=1 (as in CI). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
PG_URL=${TEST_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}

echo "=== lint: ruff format and check, mypy --strict (tests too), the import contracts ==="
"$PY" -m ruff format --check .
"$PY" -m ruff check .
"$PY" -m mypy
"$PY" -m mypy tests
"$(dirname "$PY")/lint-imports" --no-cache

echo "=== capshare tests on SQLite, with coverage (floor in pyproject.toml) ==="
env -u TEST_DATABASE_URL "$PY" -m pytest --cov --cov-report=term "$@"

if "$PY" - "$PG_URL" <<'PY'
import sys
import psycopg
url = sys.argv[1].replace("postgresql+psycopg://", "postgresql://", 1)
try:
    psycopg.connect(url, connect_timeout=3).close()
except psycopg.Error as exc:
    print(f"PostgreSQL unreachable: {exc}", file=sys.stderr)
    sys.exit(1)
PY
then
  echo "=== capshare tests on PostgreSQL ($PG_URL) ==="
  # The pure matcher, the payments stub and the deployment files do not touch the
  # database: they ran above.
  TEST_DATABASE_URL="$PG_URL" "$PY" -m pytest --ignore=tests/matching --ignore=tests/payments \
    --ignore=tests/infra "$@"
elif [ "${CAPSHARE_REQUIRE_POSTGRES:-0}" = "1" ]; then
  echo "PostgreSQL is required here but unreachable" >&2
  exit 1
else
  echo "=== PostgreSQL not reachable: the PostgreSQL run was skipped ==="
fi
