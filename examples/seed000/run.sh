#!/usr/bin/env bash
# Seed 000 under `reckon serve`: a day of water levels for 5 locations, then three
# readings of location 42 for 14:00-15:00 that arrive after the day is over. The window
# is corrected at once (count 6 -> 9, v2 to v4), the change feed and the history show it, and
# `reckon verify` checks every window against the raw log afterwards.
#
#   examples/seed000/run.sh                 # builds reckon in release mode first
#   RECKON=/path/to/reckon examples/seed000/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${RECKON:-}" ]; then
  (cd "$here/../.." && cargo build --release -q -p reckon)
  RECKON="${CARGO_TARGET_DIR:-$here/../../target}/release/reckon"
fi
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"   # the store (reckon-seed000-data) is created here

"$RECKON" serve --config "$here/reckon.toml" --listen 127.0.0.1:0 >serve.log 2>serve.err &
pid=$!
for _ in $(seq 200); do grep -q '^reckon listening on ' serve.log && break; sleep 0.05; done
url="$(sed -n 's/^reckon listening on //p' serve.log)"
[ -n "$url" ] || { cat serve.log serve.err >&2; exit 2; }
post() { curl -sS --fail-with-body --data-binary @"$here/$1" "$url/v1/streams/water_level/events"; echo; }

echo "== a day of readings (720 events)"
post events.ndjson
echo "== location 42, 14:00-15:00: 6 readings (v1)"
"$RECKON" query --url "$url" windows water_level_mean_1h --key i=42 --csv | grep -E '^(pipeline|.*T14:00)'
echo "== three late readings of location 42 for 14:00-15:00"
post late.ndjson
echo "== corrected at once, one version per late reading: v2, v3, v4 (count 9)"
"$RECKON" query --url "$url" history water_level_mean_1h --key i=42 --start 2022-06-13T14:00:00Z --csv
echo "== the change feed's newest entries"
"$RECKON" query --url "$url" changes water_level_mean_1h --since 0 | tail -n 2
kill -TERM "$pid"
wait "$pid"
pid=""
echo "== every stored window against a batch recompute of the raw log"
"$RECKON" verify --config "$here/reckon.toml"
