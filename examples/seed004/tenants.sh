#!/usr/bin/env bash
# Seed 004's tenants under `reckon serve`: two customers (hanoi, saigon) with the same
# stream and pipeline names, each seeing only its own alarms. Single-user mode until the
# first token; then every request needs a token, a name outside the token's tenant is
# 404 and outside its scopes 403.
#
#   examples/seed004/tenants.sh                 # builds reckon in release mode first
#   RECKON=/path/to/reckon examples/seed004/tenants.sh
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

"$RECKON" serve --config "$here/tenants.toml" --listen 127.0.0.1:0 >serve.log 2>serve.err &
pid=$!
for _ in $(seq 200); do grep -q '^reckon listening on ' serve.log && break; sleep 0.05; done
export RECKON_URL="$(sed -n 's/^reckon listening on //p' serve.log)"
[ -n "$RECKON_URL" ] || { cat serve.log serve.err >&2; exit 2; }
status() { curl -sS -o /dev/null -w '%{http_code}\n' "$@"; }

echo "== no token yet: single-user mode (loopback only). The first token is the operator's"
admin="$("$RECKON" token create --admin --description operator)"
echo "== now a request without a token is refused"
status "$RECKON_URL/v1/pipelines"
export RECKON_TOKEN="$admin"
echo "== the operator creates two tenants and their tokens"
"$RECKON" tenant create hanoi >/dev/null
"$RECKON" tenant create saigon --events-per-second 120 --max-series 200 >/dev/null
"$RECKON" tenant list
hanoi="$("$RECKON" token create --tenant hanoi --scope read --scope write --description dashboards)"
saigon="$("$RECKON" token create --tenant saigon --scope read)"
device="$("$RECKON" token create --tenant saigon --scope write:alarms --expires-in 90d --description gateway)"

echo "== hanoi posts the 191 alarms; saigon's gateway the last 100 (both to \"alarms\")"
(head -n 1 "$here/alarms.csv"; tail -n 100 "$here/alarms.csv") >saigon.csv
curl -sS --fail-with-body -H "Authorization: Bearer $hanoi" -H 'Content-Type: text/csv' \
  --data-binary @"$here/alarms.csv" "$RECKON_URL/v1/streams/alarms/events"; echo
curl -sS --fail-with-body -H "Authorization: Bearer $device" -H 'Content-Type: text/csv' \
  --data-binary @saigon.csv "$RECKON_URL/v1/streams/alarms/events"; echo

echo "== alarms in each tenant's closed alarms_5m windows (same name, different data)"
for who in hanoi saigon; do
  token="${!who}"
  RECKON_TOKEN="$token" "$RECKON" query windows alarms_5m --all --csv |
    python3 -c "import csv,sys; print('$who', sum(int(r['all']) for r in csv.DictReader(sys.stdin)))"
done
echo "== saigon cannot reach hanoi's data by any name (404), its gateway cannot read (403)"
status -H "Authorization: Bearer $saigon" "$RECKON_URL/v1/pipelines/hanoi%2Falarms_5m/windows"
status -H "Authorization: Bearer $device" "$RECKON_URL/v1/pipelines/alarms_5m/windows"
echo "== saigon's quota is 120 events/s: a second later, its 100 again twice; the second is refused whole"
sleep 1
for _ in 1 2; do
  curl -sS -o /dev/null -w '%{http_code} retry after %header{retry-after}\n' \
    -H "Authorization: Bearer $device" -H 'Content-Type: text/csv' \
    --data-binary @saigon.csv "$RECKON_URL/v1/streams/alarms/events"
done
"$RECKON" tenant usage saigon | python3 -c '
import json, sys
u = json.load(sys.stdin)["usage"]
print("series", u["series"], "accepted", u["accepted_events"], "throttled", u["throttled_requests"])'
echo "== saigon's metrics name only its own series"
curl -sS -H "Authorization: Bearer $saigon" "$RECKON_URL/metrics" | grep '^reckon_events_accepted_total'
echo "== the operator reads any tenant's pipeline by its stored name, hanoi/alarms_5m"
"$RECKON" query windows hanoi/alarms_5m --limit 1 --csv | tail -1 | cut -d, -f1-3
echo "== tokens the operator manages (no secrets are kept)"
"$RECKON" token list | grep -c '"id"'
kill -TERM "$pid"; wait "$pid" || true; pid=""
