#!/usr/bin/env bash
# Not part of CI: one backfill plan against a real Airflow 3 standalone from PyPI.
# Installs apache-airflow into ~/.cache/reckon-airflow (minutes, once), starts
# `airflow standalone` on port 18080 with a one-task DAG, makes a Delta table with a late
# day (scripts/delta_tables.py long), plans it with `reckon backfill plan`, triggers the
# DAG run with `reckon backfill trigger --airflow`, and polls until reckon says done.
#   scripts/airflow-check.sh                       # RECKON=/path/to/reckon to skip the build
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
RECKON="${RECKON:-}"
if [ -z "$RECKON" ]; then
  (cd "$here" && cargo build --release -q -p reckon)
  RECKON="${CARGO_TARGET_DIR:-$here/target}/release/reckon"
fi
venv="$HOME/.cache/reckon-airflow"
if ! "$venv/bin/airflow" version >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "apache-airflow==3.1.*"
fi
py="$("$here/scripts/python-delta.sh")"
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; pkill -f "airflow (api-server|scheduler|dag-processor|triggerer)" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/airflow/dags"
cat >"$work/airflow/dags/devices_backfill.py" <<'DAG'
from datetime import datetime
from airflow.sdk import DAG
from airflow.providers.standard.operators.bash import BashOperator

with DAG("devices_backfill", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    BashOperator(task_id="backfill", bash_command='echo "backfill {{ dag_run.conf }}"')
DAG
export PATH="$venv/bin:$PATH" AIRFLOW_HOME="$work/airflow" AIRFLOW__CORE__LOAD_EXAMPLES=False \
  AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True AIRFLOW__API__PORT=18080 \
  AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://localhost:18080/execution/
airflow standalone >"$work/airflow.log" 2>&1 &
pid=$!
url=http://127.0.0.1:18080
for _ in $(seq 120); do curl -sf "$url/api/v2/version" >/dev/null && break; sleep 2; done
export AIRFLOW_TOKEN="$(curl -sf "$url/auth/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
for _ in $(seq 60); do
  curl -sf -X PATCH -H "Authorization: Bearer $AIRFLOW_TOKEN" -H 'Content-Type: application/json' \
    "$url/api/v2/dags/devices_backfill" -d '{"is_paused": false}' >/dev/null && break
  sleep 2   # the DAG is not parsed yet
done
cd "$work"
"$py" "$here/scripts/delta_tables.py" long table >/dev/null
echo "== the plan"
"$RECKON" backfill plan --table table --name devices --store state --since-version 13 2>/dev/null |
  python3 -c 'import json,sys; p=json.load(sys.stdin); print(p["partitions"], "lastProcessedVersion", p["lastProcessedVersion"])'
echo "== triggered, then polled until Airflow's run ends"
for _ in $(seq 30); do
  state="$("$RECKON" backfill trigger --name devices --store state --airflow "$url" --dag devices_backfill 2>/dev/null |
    python3 -c 'import json,sys; print(" ".join(r["partition"] + ":" + r["status"] for r in json.load(sys.stdin)["runs"]))')"
  echo "$state"
  case "$state" in *triggered*|*pending*) sleep 5 ;; *) break ;; esac
done
curl -sf -H "Authorization: Bearer $AIRFLOW_TOKEN" "$url/api/v2/dags/devices_backfill/dagRuns/reckon__devices__2024-02-01__v15" |
  python3 -c 'import json,sys; d=json.load(sys.stdin); print("airflow:", d["state"], d["logical_date"], d["conf"])'
