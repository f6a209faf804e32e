#!/usr/bin/env bash
# Starts (up) or stops (down) the peers baton-bench compares against, each on loopback only, each
# with a temporary data directory and its default durability settings:
#   Redis 7      port 16379  RDB snapshots on the default schedule (save 3600 1 300 100 60 10000), no AOF
#                port 16380  appendonly yes, appendfsync always (every write fsynced before its reply)
#                port 16381  appendonly yes, appendfsync everysec (fsync once a second)
#                            (the AOF instances keep the default RDB schedule too; each its own directory)
#   ZooKeeper    port 12181  transaction log fsynced before every reply (forceSync=yes), tickTime=2000
#                            (sessions 4-40 s), admin server off, maxClientCnxns=0 (no per-IP cap: herd)
#   etcd 3.4     port 12379  WAL fsynced before every commit, snapshot every 100000 entries,
#                            peer port 12380, one-member cluster
# `down` stops exactly the processes `up` started (their pids are kept in the state directory).
# Environment: BATON_BENCH_PEERS_DIR (state, default /tmp/baton-bench-peers-$UID),
#              REDIS_PORT, REDIS_ALWAYS_PORT, REDIS_EVERYSEC_PORT, ZOOKEEPER_PORT, ETCD_PORT, ETCD_PEER_PORT.
set -euo pipefail

STATE_DIR=${BATON_BENCH_PEERS_DIR:-/tmp/baton-bench-peers-$(id -u)}
REDIS_PORT=${REDIS_PORT:-16379}
REDIS_ALWAYS_PORT=${REDIS_ALWAYS_PORT:-16380}
REDIS_EVERYSEC_PORT=${REDIS_EVERYSEC_PORT:-16381}
ZOOKEEPER_PORT=${ZOOKEEPER_PORT:-12181}
ETCD_PORT=${ETCD_PORT:-12379}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-12380}

log() { echo "peers: $*" >&2; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # port, name, pid
    for _ in $(seq 1 300); do
        if ! port_free "$1"; then return 0; fi
        if ! kill -0 "$3" 2>/dev/null; then log "$2 exited; see $STATE_DIR/$2.log"; tail -20 "$STATE_DIR/$2.log" >&2; return 1; fi
        sleep 0.1
    done
    log "$2 did not open port $1 within 30 s"; return 1
}

install_missing() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    [ -f /usr/share/java/zookeeper.jar ] || missing+=(zookeeper)
    command -v etcd >/dev/null || missing+=(etcd-server)
    command -v java >/dev/null || missing+=(default-jre-headless)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]} from Debian"
        local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get install -y --no-install-recommends "${missing[@]}" >&2
    fi
}

start_redis() {  # name, port, extra settings...
    local name=$1 port=$2; shift 2
    mkdir -p "$STATE_DIR/$name"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$STATE_DIR/$name" --daemonize no \
        --logfile "$STATE_DIR/$name.log" --maxclients 20000 "$@" &
    echo $! > "$STATE_DIR/$name.pid"
    wait_port "$port" "$name" "$!"
}

start_zookeeper() {
    mkdir -p "$STATE_DIR/zookeeper/data"
    cat > "$STATE_DIR/zookeeper/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$STATE_DIR/zookeeper/data
clientPort=$ZOOKEEPER_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=
CFG
    # Debian's zkServer.sh always reads /etc/zookeeper/conf, so run the server class ourselves.
    java -Dzookeeper.log.dir="$STATE_DIR/zookeeper" -Djava.net.preferIPv4Stack=true \
        -cp "/usr/share/java/zookeeper.jar:/usr/share/java/zookeeper-jute.jar" \
        org.apache.zookeeper.server.quorum.QuorumPeerMain "$STATE_DIR/zookeeper/zoo.cfg" \
        > "$STATE_DIR/zookeeper.log" 2>&1 &
    echo $! > "$STATE_DIR/zookeeper.pid"
    wait_port "$ZOOKEEPER_PORT" zookeeper "$!"
}

start_etcd() {
    mkdir -p "$STATE_DIR/etcd"
    etcd --name baton-bench --data-dir "$STATE_DIR/etcd/data" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "baton-bench=http://127.0.0.1:$ETCD_PEER_PORT" --log-outputs stderr \
        > "$STATE_DIR/etcd.log" 2>&1 &
    echo $! > "$STATE_DIR/etcd.pid"
    wait_port "$ETCD_PORT" etcd "$!"
}

up() {
    install_missing
    mkdir -p "$STATE_DIR"
    for port in "$REDIS_PORT" "$REDIS_ALWAYS_PORT" "$REDIS_EVERYSEC_PORT" "$ZOOKEEPER_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT"; do
        port_free "$port" || { log "port $port is taken; set REDIS_PORT/REDIS_ALWAYS_PORT/REDIS_EVERYSEC_PORT/ZOOKEEPER_PORT/ETCD_PORT"; exit 1; }
    done
    start_redis redis "$REDIS_PORT"
    start_redis redis-always "$REDIS_ALWAYS_PORT" --appendonly yes --appendfsync always
    start_redis redis-everysec "$REDIS_EVERYSEC_PORT" --appendonly yes --appendfsync everysec
    start_zookeeper
    start_etcd
    log "up: redis 127.0.0.1:$REDIS_PORT (pid $(cat "$STATE_DIR/redis.pid")), AOF always :$REDIS_ALWAYS_PORT, AOF everysec :$REDIS_EVERYSEC_PORT, zookeeper 127.0.0.1:$ZOOKEEPER_PORT (pid $(cat "$STATE_DIR/zookeeper.pid")), etcd 127.0.0.1:$ETCD_PORT (pid $(cat "$STATE_DIR/etcd.pid"))"
}

down() {
    for name in etcd zookeeper redis redis-always redis-everysec; do
        local file="$STATE_DIR/$name.pid"
        [ -f "$file" ] || continue
        local pid; pid=$(cat "$file")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        fi
        rm -f "$file"
    done
    rm -rf "$STATE_DIR"
    log "down"
}

versions() {
    echo "redis: $(redis-server --version | head -1)"
    echo "zookeeper: $(dpkg-query -W -f='${Version}' zookeeper 2>/dev/null)"
    echo "etcd: $(etcd --version | head -1)"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    versions) versions ;;
    *) echo "usage: $0 up|down|versions" >&2; exit 2 ;;
esac
