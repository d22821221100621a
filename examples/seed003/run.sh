#!/usr/bin/env bash
# Seed 003 under `reckon serve`: people in spaces from door sensors (DPUs), each
# crossing +1 or -1 as the DPU sees it, counted for the space its DPU was on at the
# time (the dpu_location rows, with a sign for DPUs mounted the other way round),
# clamped at zero. Shows the seed's two queries (the count of a space now, and at a
# past timestamp: the last value at or before it, null without data), the real-time
# count next to the reconciled one, then two late crossings (the count at the past
# timestamp is corrected, the change feed carries the corrected minutes, the count as
# it was known before them is still there), and a late mapping change: DPU d3 was
# really on the lobby's door since 17:03, so its crossings move from the cafe.
#
#   examples/seed003/run.sh                 # builds reckon in release mode first
#   RECKON=/path/to/reckon examples/seed003/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${RECKON:-}" ]; then
  (cd "$here/../.." && cargo build --release -q -p reckon)
  RECKON="${CARGO_TARGET_DIR:-$here/../../target}/release/reckon"
fi
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"   # the store (reckon-seed003-data) is created here

"$RECKON" serve --config "$here/reckon.toml" --listen 127.0.0.1:0 >serve.log 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q '^reckon listening on ' serve.log && break; sleep 0.05; done
url="$(sed -n 's/^reckon listening on //p' serve.log)"
[ -n "$url" ] || { cat serve.log >&2; exit 2; }
post() { curl -sS --fail-with-body --data-binary @"$here/$2" "$url/v1/streams/$1/events"; echo; }
total() { "$RECKON" query --url "$url" total occupancy "$@"; }

echo "== the mapping: which DPU is on which space's door, which way round, from when"
post dpu_location dpu_location.ndjson
echo "== crossings as the DPUs sent them (out of order in the cafe, one retry in the lobby)"
post crossings crossings.ndjson
echo "== the lobby now (real time and reconciled agree)"
total --key space=lobby
echo "== the cafe now: live, an 'out' arrived before its 'in' and hit the clamp; reconciled puts them in time order"
total --key space=cafe
echo "== the lobby at 2018-02-24T17:24:25.493Z (the seed's query), and a space with no data (null)"
total --key space=lobby --at 2018-02-24T17:24:25.493Z
total --key space=garage --at 2018-02-24T17:24:25.493Z
before="$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)"
sleep 1
echo "== two crossings out of the lobby at 17:06 and 17:07:30 arrive late"
since="$(curl -sS "$url/v1/pipelines/occupancy/changes?limit=1" | sed -n 's/.*"last_change":\([0-9]*\).*/\1/p')"
post crossings late.ndjson
echo "== the lobby at 17:24:25.493 again: corrected"
total --key space=lobby --at 2018-02-24T17:24:25.493Z
echo "== the change feed since: the new minutes, and every later minute whose total moved (one version each)"
"$RECKON" query --url "$url" changes occupancy --since "$since"
echo "== the lobby at 17:24:25 as the results said before the late crossings (per-minute resolution)"
total --key space=lobby --at 2018-02-24T17:24:25.493Z --known-at "$before"
echo "== a late mapping change: d3 was on the lobby's side door from 17:03 (facing in: sign -1)"
since="$(curl -sS "$url/v1/pipelines/occupancy/changes?limit=1" | sed -n 's/.*"last_change":\([0-9]*\).*/\1/p')"
post dpu_location moved.ndjson
echo "== the lobby at 17:24:25.493 and the cafe now: d3's crossings counted where it really was"
total --key space=lobby --at 2018-02-24T17:24:25.493Z
total --key space=cafe
echo "== the change feed since (recomputed): the minutes d3's crossings left (cafe) and joined (lobby), and the later minutes whose clamped totals moved"
"$RECKON" query --url "$url" changes occupancy --since "$since"
kill -TERM "$pid"
wait "$pid"
pid=""
