#!/usr/bin/env bash
# Starts the services the connector tests and examples use, each only if nothing
# answers on its port: PostgreSQL (5432), Redis (6379), Mosquitto (1883) and NATS with
# JetStream (4222), from Debian's packages (installed when missing and apt works), and
# the kcat client.
# The connector tests also start private nats-server and mosquitto instances of their
# own, on free ports, to kill and restart them. Prints one line per service.
set -euo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_up() {
  for _ in $(seq 100); do up "$1" && return 0; sleep 0.1; done
  return 1
}
need() { # command package
  command -v "$1" >/dev/null 2>&1 && return 0
  [ -x "/usr/sbin/$1" ] && return 0
  if command -v apt-get >/dev/null 2>&1; then
    # A fresh machine may have no package lists yet: fetch them once and retry.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null 2>&1; } || true
  fi
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]
}
start() { # name port command...
  local name="$1" port="$2"
  shift 2
  if up "$port"; then
    echo "$name: running on 127.0.0.1:$port"
    return 0
  fi
  "$@" >/dev/null 2>&1 || true
  if wait_up "$port"; then
    echo "$name: started on 127.0.0.1:$port"
  else
    echo "$name: could not be started on 127.0.0.1:$port" >&2
    return 1
  fi
}

status=0
if up 5432 || need pg_ctlcluster postgresql; then
  start PostgreSQL 5432 bash -c 'pg_ctlcluster "$(ls /etc/postgresql | sort -V | tail -1)" main start' || status=1
fi
if up 6379 || need redis-server redis-server; then
  start Redis 6379 redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no || status=1
fi
if up 1883 || need mosquitto mosquitto; then
  start Mosquitto 1883 bash -c 'm=$(command -v mosquitto || echo /usr/sbin/mosquitto); "$m" -d -c /etc/mosquitto/mosquitto.conf' || status=1
fi
if up 4222 || need nats-server nats-server; then
  start NATS 4222 bash -c 'n=$(command -v nats-server || echo /usr/sbin/nats-server); mkdir -p /var/lib/nats-server; setsid "$n" -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log </dev/null >/dev/null 2>&1 &' || status=1
fi
# kcat, a Kafka client, for examples/connectors/kafka.sh (no Kafka broker: that example
# runs `reckon kafka-mock`).
if need kcat kcat; then
  echo "kcat: $(command -v kcat)"
else
  echo "kcat: could not be installed" >&2
  status=1
fi
exit "$status"
