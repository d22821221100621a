#!/usr/bin/env bash
# Kafka end to end, as seed 001 reads its topics: payments as CloudEvents on a Kafka
# topic of 3 partitions reach reckon through a `[[source]]` (a consumer group, one
# watermark partition per Kafka partition); every change of the hourly totals goes
# back to Kafka through a `[[sink]]`, as a CloudEvent keyed by its window. A late
# payment then corrects a closed hour: its new version lands on the results topic, and
# the last record of each key (what a compacted topic keeps) is the newest.
#
# There is no Kafka broker on this machine: `reckon kafka-mock` runs librdkafka's mock
# cluster, which speaks the Kafka protocol (it is what reckon's tests use). Point the
# urls at a real cluster and the script is the same. Needs `kcat`
# (scripts/services.sh installs it).
#
#   examples/connectors/kafka.sh              # builds reckon in release mode first
#   RECKON=/path/to/reckon examples/connectors/kafka.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${RECKON:-}" ]; then
  (cd "$here/../.." && cargo build --release -q -p reckon)
  RECKON="${CARGO_TARGET_DIR:-$here/../../target}/release/reckon"
fi
command -v kcat >/dev/null || { echo "kcat is missing: run scripts/services.sh" >&2; exit 2; }
work="$(mktemp -d)"
pid="" mock=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  [ -n "$mock" ] && kill "$mock" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
"$RECKON" kafka-mock --topic payments:3 --topic results:3 >mock.out 2>mock.log &
mock=$!
for _ in $(seq 200); do [ -s mock.out ] && break; sleep 0.05; done
kafka="$(head -1 mock.out)"
[ -n "$kafka" ] || { cat mock.log >&2; exit 2; }
echo "== a mock Kafka cluster on $kafka"
cat >reckon.toml <<EOF
[store]
path = "data"

[[stream]]
name = "payments"
format = "cloudevents"
key_fields = ["source"]
time_field = "time"
id_field = "id"

[[pipeline]]
name = "amount_1h"
stream = "payments"
window = { type = "tumbling", size = "1h" }
aggregates = [{ fn = "sum", field = "data.amount", name = "total" }, { fn = "count" }]
out_of_orderness = "5m"
allowed_lateness = "1d"
idle_timeout = "10s"

[[source]]
name = "payments"
kind = "kafka"
url = "kafka://$kafka"
stream = "payments"
subject = "payments"
partition_by = "partition"

[[sink]]
name = "results"
kind = "kafka"
url = "kafka://$kafka"
topic = "results"
EOF
"$RECKON" serve --config reckon.toml --listen 127.0.0.1:0 >serve.log 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q '^reckon listening on ' serve.log && break; sleep 0.05; done
url="$(sed -n 's/^reckon listening on //p' serve.log)"
[ -n "$url" ] || { cat serve.log >&2; exit 2; }
# A payment as a CloudEvent, keyed by its shop (one shop, one Kafka partition).
pay() { # id shop time amount
  printf '%s|{"specversion":"1.0","id":"%s","source":"%s","type":"payment","time":"%s","data":{"amount":%s}}\n' \
    "$2" "$1" "$2" "$3" "$4" | kcat -P -b "$kafka" -t payments -K '|'
}
# Until the source committed `$1` messages and the sink wrote every change.
settle() {
  for _ in $(seq 400); do
    src="$(curl -sS "$url/v1/sources")"
    snk="$(curl -sS "$url/v1/sinks")"
    last="$(echo "$snk" | sed -n 's/.*"last_change":\([0-9]*\).*/\1/p')"
    if [ "$(echo "$src" | sed -n 's/.*"messages":\([0-9]*\).*/\1/p')" = "$1" ] &&
      echo "$snk" | grep -q "\"cursor\":$last[,}]" && [ "$last" != 0 ]; then
      return
    fi
    sleep 0.05
  done
  echo "did not settle: $src $snk" >&2; exit 1
}
# The results topic as a compacted topic keeps it: the last record of each key.
results() {
  kcat -C -b "$kafka" -t results -e -q -f '%k\t%s\n' |
    awk -F'\t' '{ last[$1] = $2 } END { for (k in last) print last[k] }' |
    while read -r ev; do
      id="$(echo "$ev" | grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)"
      count="$(echo "$ev" | grep -o '"count":[0-9]*' | head -1 | cut -d: -f2)"
      total="$(echo "$ev" | grep -o '"total":[0-9.]*' | cut -d: -f2)"
      echo "  $id  count $count  total $total"
    done | sort
}

echo "== payments of two shops at 10:05, 10:40, 11:10 and 12:20 on the payments topic"
pay p1 shop-a 2024-05-01T10:05:00Z 20
pay p2 shop-a 2024-05-01T10:40:00Z 40
pay p3 shop-b 2024-05-01T10:50:00Z 5
pay p4 shop-a 2024-05-01T11:10:00Z 30
pay p5 shop-a 2024-05-01T12:20:00Z 50
pay p6 shop-b 2024-05-01T12:20:00Z 1
settle 6
echo "== the results topic, the last record per window"
results
echo "== a late payment of shop-a for 10:30 arrives"
pay p7 shop-a 2024-05-01T10:30:00Z 100
settle 7
echo "== the results topic: shop-a's 10:00 window has a new version (count 3, total 160)"
results
echo "== every record of shop-a's 10:00 window, in order (their ce_id headers)"
kcat -C -b "$kafka" -t results -e -q -f '%h\n' | grep -o 'ce_id=.*shop-a/2024-05-01T10:00:00Z.*'
echo "== the source (positions per partition) and the sink"
curl -sS "$url/v1/sources"; echo
curl -sS "$url/v1/sinks"; echo
kill -TERM "$pid"
wait "$pid"
pid=""
