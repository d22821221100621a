#!/usr/bin/env bash
# Connectors end to end: water levels published over MQTT (QoS 1) reach reckon
# through a `[[source]]`; the hourly means go to PostgreSQL (one row per window) and
# Redis (the window, and each station's latest) through two `[[sink]]`s. A late
# reading then corrects the 10:00 window: the PostgreSQL row and the Redis hash move to
# version 2 on their own, as seed 003 keeps real-time counts in Redis and history in
# PostgreSQL without the hand-written glue.
#
# Needs the machine's Mosquitto (1883), PostgreSQL (5432, trust auth, database test)
# and Redis (6379): scripts/services.sh starts any that is not running.
#
#   examples/connectors/run.sh              # builds reckon in release mode first
#   RECKON=/path/to/reckon examples/connectors/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${RECKON:-}" ]; then
  (cd "$here/../.." && cargo build --release -q -p reckon)
  RECKON="${CARGO_TARGET_DIR:-$here/../../target}/release/reckon"
fi
work="$(mktemp -d)"
tag="example_$$"
table="reckon_$tag"
prefix="reckon:$tag:"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  psql -h 127.0.0.1 -U postgres -d test -qc "DROP TABLE IF EXISTS $table" >/dev/null 2>&1 || true
  redis-cli -h 127.0.0.1 --scan --pattern "$prefix*" | xargs -r redis-cli -h 127.0.0.1 DEL >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
cat >reckon.toml <<EOF
[store]
path = "data"

[[stream]]
name = "water_level"
key_fields = ["station"]
id_field = "id"

[[pipeline]]
name = "level_1h"
stream = "water_level"
window = { type = "tumbling", size = "1h" }
aggregates = [{ fn = "mean", field = "level", name = "mean" }, { fn = "count" }]
out_of_orderness = "5m"
allowed_lateness = "1d"

[[source]]
name = "gauges"
kind = "mqtt"
url = "mqtt://127.0.0.1:1883"
stream = "water_level"
subject = "gauges/#"
durable = "reckon-example-connectors"

[[sink]]
name = "history"
kind = "postgres"
url = "host=127.0.0.1 port=5432 user=postgres dbname=test"
table = "$table"

[[sink]]
name = "now"
kind = "redis"
url = "redis://127.0.0.1:6379"
key_prefix = "$prefix"
EOF
"$RECKON" serve --config reckon.toml --listen 127.0.0.1:0 >serve.log 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q '^reckon listening on ' serve.log && break; sleep 0.05; done
url="$(sed -n 's/^reckon listening on //p' serve.log)"
[ -n "$url" ] || { cat serve.log >&2; exit 2; }
for _ in $(seq 200); do curl -sS "$url/v1/sources" | grep -q '"state":"running"' && break; sleep 0.05; done
pub() { mosquitto_pub -h 127.0.0.1 -p 1883 -q 1 -t "gauges/$1" -m "$2"; }
# Until both sinks have written every change the server made.
settle() {
  for _ in $(seq 200); do
    s="$(curl -sS "$url/v1/sinks")"
    last="$(echo "$s" | sed -n 's/.*"last_change":\([0-9]*\).*/\1/p')"
    [ "$(echo "$s" | grep -o "\"cursor\":$last[,}]" | wc -l)" = 2 ] && [ "$last" != 0 ] && return
    sleep 0.05
  done
  echo "the sinks did not catch up: $s" >&2; exit 1
}
rows() {
  psql -h 127.0.0.1 -U postgres -d test -c \
    "SELECT key, window_start AT TIME ZONE 'UTC' AS window_start, version, kind, count, result FROM $table ORDER BY key, window_start"
}

echo "== readings of station s1 at 10:05, 10:40, 11:10 and 12:20 over MQTT"
pub s1 '{"id":"1","station":"s1","time":"2024-05-01T10:05:00Z","level":2.0}'
pub s1 '{"id":"2","station":"s1","time":"2024-05-01T10:40:00Z","level":4.0}'
pub s1 '{"id":"3","station":"s1","time":"2024-05-01T11:10:00Z","level":3.0}'
pub s1 '{"id":"4","station":"s1","time":"2024-05-01T12:20:00Z","level":5.0}'
settle
echo "== PostgreSQL: the closed windows 10:00 and 11:00 (version 1)"
rows
echo "== Redis: station s1's latest window"
redis-cli -h 127.0.0.1 HGET "${prefix}level_1h:station=s1:latest" json; echo
echo "== a late reading for 10:30 arrives"
pub s1 '{"id":"5","station":"s1","time":"2024-05-01T10:30:00Z","level":9.0}'
settle
echo "== PostgreSQL: the 10:00 row is now version 2 (mean 5, count 3)"
rows
echo "== Redis: the 10:00 window's hash"
redis-cli -h 127.0.0.1 HGET "${prefix}level_1h:station=s1:2024-05-01T10:00:00Z" json; echo
echo "== the source and the sinks"
curl -sS "$url/v1/sources"; echo
curl -sS "$url/v1/sinks"; echo
kill -TERM "$pid"
wait "$pid"
pid=""
