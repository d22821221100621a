#!/usr/bin/env bash
# Seed 004 under `reckon serve`: real BTS alarms from Vietnam (alarms.csv, in their real
# arrival order by id), counted per station and alarm in 5-minute windows (all alarms,
# and those above their threshold), rolled up to hours, local days, ISO weeks and
# months in Asia/Ho_Chi_Minh. Then three held-back rows arrive late: every closed level
# they fall in is corrected in the same commit. The sample ends there (`--finish`
# closes the days, weeks and months), and `reckon verify` checks every level against
# the raw log.
#
#   examples/seed004/run.sh                 # builds reckon in release mode first
#   RECKON=/path/to/reckon examples/seed004/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${RECKON:-}" ]; then
  (cd "$here/../.." && cargo build --release -q -p reckon)
  RECKON="${CARGO_TARGET_DIR:-$here/../../target}/release/reckon"
fi
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"   # the store (reckon-seed004-data) is created here

serve() {
  "$RECKON" serve --config "$here/reckon.toml" --listen 127.0.0.1:0 >serve.log 2>serve.err &
  pid=$!
  for _ in $(seq 200); do grep -q '^reckon listening on ' serve.log && break; sleep 0.05; done
  url="$(sed -n 's/^reckon listening on //p' serve.log)"
  [ -n "$url" ] || { cat serve.log serve.err >&2; exit 2; }
}
stop() { kill -TERM "$pid"; wait "$pid" || true; pid=""; }
post() {
  curl -sS --fail-with-body -H 'Content-Type: text/csv' --data-binary @"$here/$1" \
    "$url/v1/streams/alarms/events"
  echo
}
key="alarm_id=308,station_id=1161114027"

serve
echo "== the dataflow"
curl -sS "$url/v1/pipelines"; echo
echo "== 191 alarms in arrival order"
post alarms.csv
echo "== station 1161114027, alarm 308: its closed 5-minute windows and hour (UTC; 12:00 local is 05:00Z)"
"$RECKON" query --url "$url" windows alarms_5m --key "$key" --csv
"$RECKON" query --url "$url" windows alarms_hour --key "$key" --csv
echo "== three rows held back, now late; one is that station's 12:04:03 alarm"
post late.csv
echo "== its closed 5-minute window is corrected at once (v2: all 3 -> 4); its hour, 12:00-13:00"
echo "   local, is still open and takes the row when it closes"
"$RECKON" query --url "$url" history alarms_5m --key "$key" --start 2017-10-23T05:00:00Z --csv
echo "== station 1161115030's late 11:50:03 alarm lands in a closed hour: 5 minutes and hour, same commit"
other="alarm_id=308,station_id=1161115030"
"$RECKON" query --url "$url" history alarms_5m --key "$other" --start 2017-10-23T04:50:00Z --csv
"$RECKON" query --url "$url" history alarms_hour --key "$other" --start 2017-10-23T04:00:00Z --csv
echo "== that row was above its threshold: the alert alarms_above fires late for the closed 11:50"
echo "   window (late=true), and resolves at once (the watermark is past it)"
"$RECKON" query --url "$url" history alarms_above --key "$other" --start 2017-10-23T04:50:00Z --csv
echo "== and its batch trigger (webhook batch_report, format trigger) ran the report for it"
for _ in $(seq 100); do grep -q "$other 2017-10-23T04:50:00Z late=true" batch-runs.log 2>/dev/null && break; sleep 0.05; done
grep "$other 2017-10-23T04:50:00Z" batch-runs.log
echo "== a rule that never ran, over the stored history (reckon rules backfill): 3 or more"
echo "   alarms above threshold in 5 minutes, 2 windows in a row"
printf '[[alert]]\nname = "storm"\ninput = "alarms_5m"\ncondition = "above >= 3"\nfor = 2\n' >storm.toml
"$RECKON" rules backfill --url "$url" --file storm.toml --csv | python3 -c '
import csv, sys
for r in csv.DictReader(sys.stdin):
    print(r["pipeline"], r["key"], r["window_start"], r["state"], r["resolved_at"])'
stop

echo "== the sample is complete: close every window (days, weeks, months)"
"$RECKON" ingest --config "$here/reckon.toml" --stream alarms --finish </dev/null
serve
echo "== day, ISO week and month of that station and alarm (local Vietnam calendar)"
for level in day week month; do
  "$RECKON" query --url "$url" windows "alarms_$level" --key "$key" --csv
done
echo "== totals of the day over every station and alarm: all, above threshold"
curl -sS "$url/v1/pipelines/alarms_day/windows" | python3 -c '
import json, sys
w = json.load(sys.stdin)["windows"]
print("all", sum(x["values"]["all"] for x in w), "above", sum(x["values"]["above"] for x in w))'
stop
echo "== every level against a batch recompute of the raw log"
"$RECKON" verify --config "$here/reckon.toml"
