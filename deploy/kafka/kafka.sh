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
# $VITALS_KAFKA_EXTRA_PROPS (a file).
#
# Secured mode (first start of DIR only): with VITALS_KAFKA_SCRAM_USER and
# VITALS_KAFKA_SCRAM_PASSWORD_FILE set, the client listener on PORT is SASL_SSL with
# SCRAM-SHA-512: a CA and a broker certificate (SAN IP:127.0.0.1, DNS:localhost) are generated
# in DIR/tls (clients trust DIR/tls/ca.pem), and the user's SCRAM credentials are written when
# the storage is formatted. The controller and inter-broker listeners stay PLAINTEXT on loopback.
# The password reaches the format tool through an argument file (0600, removed after use), never a
# command line, which every user of the machine can read (ps).
set -euo pipefail
umask 077  # the broker's logs hold users' events: its user's only (the CA certificate is made readable below)
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
libs="${VITALS_KAFKA_LIBS:-$HOME/.cache/vitals/kafka-$version}"
# shellcheck source=../retry.sh
. "$here/../retry.sh"

resolve_jars() {
  if [ ! -f "$libs/.complete" ]; then
    mkdir -p "$libs"
    # Maven Central can drop a download mid-way (finished jars stay in ~/.m2)
    retry 4 mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -Dmaven.wagon.http.retryHandler.count=5 -DoutputDirectory="$libs" -DincludeScope=runtime >&2
    touch "$libs/.complete"
  fi
}

make_tls() { # dir: a CA and a CA-signed broker certificate, PEM (Kafka's ssl.keystore.type=PEM)
  local tls="$1/tls"
  mkdir -p "$tls"
  (
    cd "$tls"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 30 -subj "/CN=vitals local test CA" \
      -keyout ca.key -out ca.pem \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" -keyout broker.key -out broker.csr 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
      "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid,issuer" > broker.ext
    openssl x509 -req -sha256 -days 30 -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -extfile broker.ext -out broker.pem 2>/dev/null
    cat broker.key broker.pem ca.pem > broker-keystore.pem  # PKCS#8 key, then the chain
    rm -f broker.csr broker.ext ca.srl
    chmod 644 ca.pem
  )
}

secure_mode() { [ -n "${VITALS_KAFKA_SCRAM_USER:-}" ] && [ -n "${VITALS_KAFKA_SCRAM_PASSWORD_FILE:-}" ]; }

free_port() { python3 -I -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

java_run() { # main-class args...
  local main="$1"; shift
  java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/log4j2.properties" \
    -cp "$libs/*" "$main" "$@"
}

java_run_secret() { # dir main-class args...: java_run with the main class and its arguments in a 0600
  local argfile status=0  # file in dir (the java launcher's @-file), removed after
  argfile="$(umask 077; mktemp "$1/.java-args.XXXXXX")"; shift
  printf '"%s"\n' "$@" > "$argfile"  # one quoted argument a line
  java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/log4j2.properties" \
    -cp "$libs/*" "@$argfile" || status=$?
  rm -f "$argfile"
  return "$status"
}

running() { # dir: its kafka.pid names a live broker (a stale pid file's id may belong to another process)
  local pid
  [ -f "$1/kafka.pid" ] && pid="$(cat "$1/kafka.pid")" && kill -0 "$pid" 2>/dev/null || return 1
  [ ! -r "/proc/$pid/cmdline" ] || tr '\0' '\n' < "/proc/$pid/cmdline" | grep -qx kafka.Kafka
}

start() {
  local dir="$1" port="${2:-}"
  resolve_jars
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if [ -n "$port" ] && [ -f "$dir/server.properties" ] && [ -f "$dir/bootstrap" ] \
    && [ "$(cat "$dir/bootstrap")" != "127.0.0.1:$port" ]; then
    echo "$dir holds a broker made for $(cat "$dir/bootstrap"), not port $port: start it without a port," \
      "or use another directory, or delete $dir" >&2
    exit 2
  fi
  if running "$dir"; then
    cat "$dir/bootstrap"; return 0
  fi
  if [ ! -f "$dir/server.properties" ]; then
    [ -n "$port" ] || port="$(free_port)"
    local cport; cport="$(free_port)"
    while [ "$cport" = "$port" ]; do cport="$(free_port)"; done
    local listeners="PLAINTEXT://127.0.0.1:$port" advertised="PLAINTEXT://127.0.0.1:$port"
    if secure_mode; then
      local iport; iport="$(free_port)"
      while [ "$iport" = "$port" ] || [ "$iport" = "$cport" ]; do iport="$(free_port)"; done
      listeners="PLAINTEXT://127.0.0.1:$iport,SASL_SSL://127.0.0.1:$port"
      advertised="PLAINTEXT://127.0.0.1:$iport,SASL_SSL://127.0.0.1:$port"
      make_tls "$dir"
    fi
    cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$advertised
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
    if secure_mode; then
      cat >> "$dir/server.properties" <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$dir/tls/broker-keystore.pem
ssl.client.auth=none
PROPS
    fi
    if [ -n "${VITALS_KAFKA_EXTRA_PROPS:-}" ]; then cat "$VITALS_KAFKA_EXTRA_PROPS" >> "$dir/server.properties"; fi
    echo "127.0.0.1:$port" > "$dir/bootstrap"
  fi
  if [ ! -f "$dir/data/meta.properties" ]; then
    # the id is the last line (log4j may log to stdout before it)
    local cid; cid="$({ java_run org.apache.kafka.tools.StorageTool random-uuid 2>/dev/null \
      || java_run kafka.tools.StorageTool random-uuid; } | tail -n 1)"
    local scram=()
    if secure_mode; then  # SCRAM credentials live in the metadata log, written at format time
      local user="$VITALS_KAFKA_SCRAM_USER" password
      password="$(cat "$VITALS_KAFKA_SCRAM_PASSWORD_FILE")"
      case "$user$password" in *[],=[\"\\]*|*[[:cntrl:]]*)
        echo "SCRAM user/password must not hold , = [ ] \\ quotes or control characters" >&2; exit 2 ;;
      esac
      scram=(--add-scram "SCRAM-SHA-512=[name=$user,password=$password]")
    fi
    java_run_secret "$dir" kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" "${scram[@]}" \
      > "$dir/format.log" 2>&1
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
  if running "$dir"; then
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
