#!/usr/bin/env bash
# Seed 002 without Spark, Kubernetes or a cursor file written apart from the plan:
# a partitioned Delta table (written with the Python `deltalake` package) gets three
# days; reckon plans (nothing late); then late rows land in the first day and another
# day is compacted; `reckon backfill plan` lists only the late day, with
# lastProcessedVersion advanced, stored with its cursor in one commit; planning again
# finds nothing, as the seed's walkthrough ends.
#
#   examples/seed002/run.sh                 # builds reckon in release mode first
#   RECKON=/path/to/reckon examples/seed002/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${RECKON:-}" ]; then
  (cd "$here/../.." && cargo build --release -q -p reckon)
  RECKON="${CARGO_TARGET_DIR:-$here/../../target}/release/reckon"
fi
py="$("$here/../../scripts/python-delta.sh")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
plan() {
  "$RECKON" backfill plan --table devices --store state --seed-json backfilling_configuration.json >plan.json
  cat backfilling_configuration.json; echo
}

echo "== the data generator loads three days (the second in two writes); versions:"
for day in 2024-01-01 2024-01-02 2024-01-02 2024-01-03; do "$py" "$here/devices.py" devices "$day"; done
echo "== the DAG's run for 2024-01-03 plans: nothing is late"
plan
echo "== late rows for 2024-01-01 (the seed's re-run of the generator), and 2024-01-02 compacted"
"$py" "$here/devices.py" devices 2024-01-01 3
"$py" "$here/devices.py" devices --optimize 2024-01-02
echo "== the next plan lists only the late day; the compaction is no reason to backfill"
plan
python3 -c '
import json
p = json.load(open("plan.json"))
for d in p["details"]:
    print("late:", d["partition"], "reasons", d["reasons"], "rows", d["rowsAdded"], "versions", d["versions"])
for c in p["changes"]:
    print("change: v%d %s %s late=%s" % (c["version"], c["partition"], c["kind"], c["late"]))'
echo "== planning again (the backfill run itself): nothing new"
plan
echo "== the cursor, kept with the plans"
"$RECKON" backfill status --store state | python3 -c '
import json, sys
t = json.load(sys.stdin)["tables"]["devices"]
print("cursor", t["cursor"]["version"], "plans", [p["partitions"] for p in t["plans"]])'
