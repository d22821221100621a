#!/usr/bin/env bash
# Installs the Python client libraries the tests drive reckon with (the official
# InfluxDB v2 client, from PyPI) into a virtualenv under ~/.cache, and prints the path
# of its python. Idempotent: a second run only checks the import.
set -euo pipefail
venv="${RECKON_PY_VENV:-$HOME/.cache/reckon-py}"
# Tests run in parallel: one installer at a time (the others wait, then find it done).
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if ! "$venv/bin/python" -c "import influxdb_client" >/dev/null 2>&1; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "influxdb-client==1.48.0" >&2
fi
echo "$venv/bin/python"
