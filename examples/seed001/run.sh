#!/usr/bin/env bash
# Seed 001 under `reckon serve`: payments (CloudEvents) reconciled against audit records.
# p1 is audited twice, p9 was never audited, p2's payment is missing until it arrives
# late: the change feed shows `missing`, the period's completeness (v1), then `found`
# and the corrected completeness (v2).
#
#   examples/seed001/run.sh                 # builds reckon in release mode first
#   RECKON=/path/to/reckon examples/seed001/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${RECKON:-}" ]; then
  (cd "$here/../.." && cargo build --release -q -p reckon)
  RECKON="${CARGO_TARGET_DIR:-$here/../../target}/release/reckon"
fi
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"   # the store (reckon-seed001-data) is created here

"$RECKON" serve --config "$here/reckon.toml" --listen 127.0.0.1:0 >serve.log 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q '^reckon listening on ' serve.log && break; sleep 0.05; done
url="$(sed -n 's/^reckon listening on //p' serve.log)"
[ -n "$url" ] || { cat serve.log >&2; exit 2; }
post() { curl -sS --fail-with-body --data-binary @"$here/$2" "$url/v1/streams/$1/events"; echo; }

echo "== audit records, then payments as CloudEvents (p2's payment is not there)"
post payments_audit audit.ndjson
post payments payments.ndjson
echo "== the change feed: p2 missing; period 10:00-10:15 is 2 of 3 complete (v1)"
"$RECKON" query --url "$url" changes payments_recon --since 0
echo "== p2's payment arrives late, within the 1 h horizon"
post payments late.ndjson
echo "== completeness per period (the key is empty), now v2: 3 of 3"
"$RECKON" query --url "$url" windows payments_recon --key '' --csv
echo "== p2's history: v1 missing, v2 found"
"$RECKON" query --url "$url" history payments_recon --key id=p2 --start 2024-05-01T10:00:00Z --csv
kill -TERM "$pid"
wait "$pid"
pid=""
