#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) from Maven Central jars, on loopback.
#
#   deploy/kafka/kafka.sh start  DIR [PORT]   format (first time) and start; prints host:port
#   deploy/kafka/kafka.sh stop   DIR          stop cleanly (SIGTERM, then SIGKILL after 30 s)
#   deploy/kafka/kafka.sh kill   DIR          SIGKILL (fault tests)
#   deploy/kafka/kafka.sh jars                resolve the broker jars only (cached)
#
# Jars are resolved once with Maven into $VITALS_KAFKA_LIBS (default ~/.cache/vitals/kafka-<version>).
# The broker listens on 127.0.0.1 only. Extra broker properties can be appended from
# $VITALS_KAFKA_EXTRA_PROPS (a file), used by the SASL/TLS tests.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
libs="${VITALS_KAFKA_LIBS:-$HOME/.cache/vitals/kafka-$version}"

resolve_jars() {
  if [ ! -f "$libs/.complete" ]; then
    mkdir -p "$libs"
    mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$libs" -DincludeScope=runtime >&2
    touch "$libs/.complete"
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

java_run() { # main-class args...
  local main="$1"; shift
  java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/log4j2.properties" \
    -cp "$libs/*" "$main" "$@"
}

start() {
  local dir="$1" port="${2:-}"
  resolve_jars
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if [ -f "$dir/kafka.pid" ] && kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; then
    cat "$dir/bootstrap"; return 0
  fi
  if [ ! -f "$dir/server.properties" ]; then
    [ -n "$port" ] || port="$(free_port)"
    local cport; cport="$(free_port)"
    while [ "$cport" = "$port" ]; do cport="$(free_port)"; done
    cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT
log.dirs=$dir/data
num.partitions=8
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=-1
message.max.bytes=8388608
PROPS
    if [ -n "${VITALS_KAFKA_EXTRA_PROPS:-}" ]; then cat "$VITALS_KAFKA_EXTRA_PROPS" >> "$dir/server.properties"; fi
    echo "127.0.0.1:$port" > "$dir/bootstrap"
  fi
  if [ ! -f "$dir/data/meta.properties" ]; then
    local cid; cid="$(java_run org.apache.kafka.tools.StorageTool random-uuid 2>/dev/null || java_run kafka.tools.StorageTool random-uuid)"
    java_run kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" > "$dir/format.log" 2>&1
  fi
  port="$(sed -n 's/^127.0.0.1:\(.*\)$/\1/p' "$dir/bootstrap")"
  nohup bash -c "exec java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile='$here/log4j2.properties' -Dkafka.logs.dir='$dir/logs' \
    -cp '$libs/*' kafka.Kafka '$dir/server.properties'" > "$dir/server.log" 2>&1 &
  echo $! > "$dir/kafka.pid"
  # wait (polling, bounded) until the broker accepts connections and has registered
  local deadline=$((SECONDS + 120))
  until grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null; do
    if ! kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; then
      echo "kafka exited during start; see $dir/server.log" >&2; tail -30 "$dir/server.log" >&2; exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then echo "kafka did not start in 120 s" >&2; exit 1; fi
    sleep 0.2
  done
  cat "$dir/bootstrap"
}

stop() {
  local dir="$1" sig="${2:-TERM}"
  [ -f "$dir/kafka.pid" ] || return 0
  local pid; pid="$(cat "$dir/kafka.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "-$sig" "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then kill -KILL "$pid" 2>/dev/null || true; fi
      sleep 0.2
    done
  fi
  rm -f "$dir/kafka.pid"
}

case "${1:-}" in
  start) start "$2" "${3:-}" ;;
  stop) stop "$2" ;;
  kill) stop "$2" KILL ;;
  jars) resolve_jars; echo "$libs" ;;
  *) echo "usage: $0 start DIR [PORT] | stop DIR | kill DIR | jars" >&2; exit 2 ;;
esac
