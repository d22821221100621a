#!/usr/bin/env bash
# Seed 004's pipelines by API: tenant hanoi defines a pipeline and an alert rule in a
# running reckon (no restart), with reckon.toml's schema (`define.toml`). The pipeline
# starts from the alarms already stored; a changed definition starts fresh under a new
# identity, and so does the rule reading it; the same definition again changes nothing;
# everything is there after a restart; a tenant defines only its own objects.
#
#   examples/seed004/define.sh                 # builds reckon in release mode first
#   RECKON=/path/to/reckon examples/seed004/define.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${RECKON:-}" ]; then
  (cd "$here/../.." && cargo build --release -q -p reckon)
  RECKON="${CARGO_TARGET_DIR:-$here/../../target}/release/reckon"
fi
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"

serve() {
  "$RECKON" serve --config "$here/tenants.toml" --listen 127.0.0.1:0 >serve.log 2>>serve.err &
  pid=$!
  for _ in $(seq 200); do grep -q '^reckon listening on ' serve.log && break; sleep 0.05; done
  export RECKON_URL="$(sed -n 's/^reckon listening on //p' serve.log)"
  [ -n "$RECKON_URL" ] || { cat serve.log serve.err >&2; exit 2; }
}
stop() { kill -TERM "$pid"; wait "$pid" || true; pid=""; }
# A pipeline's closed windows: how many, their size, the alarms above threshold in all.
above() {
  "$RECKON" query windows "$1" --all --csv |
    python3 -c '
import csv, sys
rows = list(csv.DictReader(sys.stdin))
size = {r["window_end"][11:16] for r in rows if r["window_start"][11:16] == "05:00"}
print(rows[0]["pipeline"], "windows", len(rows), "ending", min(size), "above", sum(int(r["above"]) for r in rows))'
}
# (identity, station, start, state) of the rule's episodes.
episodes() {
  "$RECKON" query windows station_busy --all --csv |
    python3 -c '
import csv, sys
for r in csv.DictReader(sys.stdin):
    print(r["pipeline"], r["key"], r["window_start"], r["state"])' | sort
}
serve
admin="$("$RECKON" token create --admin 2>/dev/null)"
export RECKON_TOKEN="$admin"
"$RECKON" tenant create hanoi >/dev/null
"$RECKON" tenant create saigon >/dev/null
hanoi="$("$RECKON" token create --tenant hanoi --admin 2>/dev/null)"
saigon="$("$RECKON" token create --tenant saigon --admin 2>/dev/null)"
export RECKON_TOKEN="$hanoi"

echo "== hanoi posts its 191 alarms before defining anything new"
curl -sS --fail-with-body -H "Authorization: Bearer $hanoi" -H 'Content-Type: text/csv' \
  --data-binary @"$here/alarms.csv" "$RECKON_URL/v1/streams/alarms/events" >/dev/null
echo "== hanoi defines a 15-minute pipeline and an alert rule on it, while reckon runs"
"$RECKON" define apply "$here/define.toml"
echo "== the new pipeline started from the stored alarms (15-minute windows)"
above station_alarms
echo "== the rule's episodes (station_busy: above >= 5)"
episodes
echo "== the same file again: nothing restarts"
"$RECKON" define apply "$here/define.toml"
echo "== a 30-minute window instead: a new identity, and the rule reading it restarts too"
sed 's/size = "15m"/size = "30m"/' "$here/define.toml" >define30.toml
"$RECKON" define apply define30.toml
echo "== station_alarms now means station_alarms@2"
above station_alarms
episodes
echo "== after a restart the definitions run again"
stop
serve
"$RECKON" define list | python3 -c '
import json, sys
for d in json.load(sys.stdin)["definitions"]:
    print(d["kind"], d["identity"], d["definition"]["input" if d["kind"] == "alert" else "window"])'
echo "== a mistake is refused with the configuration file's message"
printf '[[pipeline]]\nname = "typo"\nstream = "alarm"\nwindow = { type = "tumbling", size = "1h" }\naggregates = [{ fn = "count" }]\n' >typo.toml
"$RECKON" define apply typo.toml 2>&1 | sed 's/^error: //' || true
echo "== saigon sees none of hanoi's definitions, and cannot read hanoi's stream from its own"
RECKON_TOKEN="$saigon" "$RECKON" define list
sed 's/stream = "alarms"/stream = "hanoi\/alarms"/' "$here/define.toml" >spy.toml
RECKON_TOKEN="$saigon" "$RECKON" define apply spy.toml 2>&1 | sed 's/^error: //' || true
echo "== deleting: not the pipeline while the rule reads it; the rule first"
"$RECKON" define delete pipeline station_alarms 2>&1 | sed 's/^error: //' || true
"$RECKON" define delete alert station_busy
"$RECKON" define delete pipeline station_alarms
stop
