#!/usr/bin/env bash
# Installs the Python `deltalake` package (delta-rs, from PyPI) and pyarrow into the
# project's virtualenv under ~/.cache, for the tests that make real Delta tables, and
# prints the path of its python. Idempotent: a second run only checks the import.
set -euo pipefail
venv="${RECKON_PY_VENV:-$HOME/.cache/reckon-py}"
# Tests run in parallel: one installer at a time (the others wait, then find it done).
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if ! "$venv/bin/python" -c "import deltalake, pyarrow" >/dev/null 2>&1; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "deltalake==1.6.6" "pyarrow==26.0.1" >&2
fi
echo "$venv/bin/python"
