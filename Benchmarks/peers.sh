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
# `up-multi-host` starts, instead, the multi-host peers (issue 9), each member on loopback only:
#   ZooKeeper    a 3-member ensemble: clients 12281-12283, quorum 12291-12293, election 12301-12303;
#                tickTime=2000 (sessions 4-40 s), initLimit=10, syncLimit=5, forceSync=yes (default),
#                admin server off, maxClientCnxns=0, 4lw.commands.whitelist=mntr,srvr; default JVM heap
#   etcd 3.4     a 3-member cluster: clients 12471/12473/12475, peers 12472/12474/12476; defaults
#                otherwise (WAL fsynced before every commit, heartbeat 100 ms, election timeout 1 s)
# `down` stops exactly the processes `up`/`up-multi-host` started (their pids are kept in the state directory).
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
ENSEMBLE_CLIENT_PORTS=(12281 12282 12283)
ENSEMBLE_QUORUM_PORTS=(12291 12292 12293)
ENSEMBLE_ELECTION_PORTS=(12301 12302 12303)
CLUSTER_CLIENT_PORTS=(12471 12473 12475)
CLUSTER_PEER_PORTS=(12472 12474 12476)

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

# What a ZooKeeper member answers to a four-letter word (empty when it does not answer).
four_letter() {  # port, word
    (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf '%s' "$2" >&3 && timeout 2 cat <&3) 2>/dev/null || true
}

start_ensemble() {
    local servers="" id
    for id in 1 2 3; do
        servers+="server.$id=127.0.0.1:${ENSEMBLE_QUORUM_PORTS[$((id - 1))]}:${ENSEMBLE_ELECTION_PORTS[$((id - 1))]}"$'\n'
    done
    for id in 1 2 3; do
        local dir="$STATE_DIR/zookeeper-$id"
        mkdir -p "$dir/data"
        echo "$id" > "$dir/data/myid"
        cat > "$dir/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=${ENSEMBLE_CLIENT_PORTS[$((id - 1))]}
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=mntr,srvr
$servers
CFG
        java -Dzookeeper.log.dir="$dir" -Djava.net.preferIPv4Stack=true \
            -cp "/usr/share/java/zookeeper.jar:/usr/share/java/zookeeper-jute.jar" \
            org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" > "$STATE_DIR/zookeeper-$id.log" 2>&1 &
        echo $! > "$STATE_DIR/zookeeper-$id.pid"
    done
    for id in 1 2 3; do
        wait_port "${ENSEMBLE_CLIENT_PORTS[$((id - 1))]}" "zookeeper-$id" "$(cat "$STATE_DIR/zookeeper-$id.pid")"
    done
    # Serving once every member says it leads or follows.
    for _ in $(seq 1 600); do
        local serving=0
        for port in "${ENSEMBLE_CLIENT_PORTS[@]}"; do
            four_letter "$port" srvr | grep -qE '^Mode: (leader|follower)' && serving=$((serving + 1))
        done
        [ "$serving" -eq 3 ] && return 0
        sleep 0.1
    done
    log "the ZooKeeper ensemble did not form within 60 s"; return 1
}

start_cluster() {
    local initial="" id
    for id in 1 2 3; do
        initial+="${initial:+,}member$id=http://127.0.0.1:${CLUSTER_PEER_PORTS[$((id - 1))]}"
    done
    for id in 1 2 3; do
        local client=${CLUSTER_CLIENT_PORTS[$((id - 1))]} peer=${CLUSTER_PEER_PORTS[$((id - 1))]}
        mkdir -p "$STATE_DIR/etcd-$id"
        etcd --name "member$id" --data-dir "$STATE_DIR/etcd-$id/data" \
            --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
            --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
            --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token baton-bench \
            --log-outputs stderr > "$STATE_DIR/etcd-$id.log" 2>&1 &
        echo $! > "$STATE_DIR/etcd-$id.pid"
    done
    for id in 1 2 3; do
        wait_port "${CLUSTER_CLIENT_PORTS[$((id - 1))]}" "etcd-$id" "$(cat "$STATE_DIR/etcd-$id.pid")"
    done
    # Serving once a member reports health (a leader elected).
    for _ in $(seq 1 300); do
        local reply
        reply=$( (exec 3<>"/dev/tcp/127.0.0.1/${CLUSTER_CLIENT_PORTS[0]}" && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && timeout 2 cat <&3) 2>/dev/null || true)
        echo "$reply" | grep -q '"health":"true"' && return 0
        sleep 0.1
    done
    log "the etcd cluster did not elect a leader within 30 s"; return 1
}

up_multi_host() {
    install_missing
    mkdir -p "$STATE_DIR"
    for port in "${ENSEMBLE_CLIENT_PORTS[@]}" "${ENSEMBLE_QUORUM_PORTS[@]}" "${ENSEMBLE_ELECTION_PORTS[@]}" \
                "${CLUSTER_CLIENT_PORTS[@]}" "${CLUSTER_PEER_PORTS[@]}"; do
        port_free "$port" || { log "port $port is taken"; exit 1; }
    done
    start_ensemble
    start_cluster
    log "up: ZooKeeper ensemble 127.0.0.1:${ENSEMBLE_CLIENT_PORTS[*]}, etcd cluster 127.0.0.1:${CLUSTER_CLIENT_PORTS[*]}"
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
    for file in "$STATE_DIR"/*.pid; do
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
    up-multi-host) up_multi_host ;;
    down) down ;;
    versions) versions ;;
    *) echo "usage: $0 up|up-multi-host|down|versions" >&2; exit 2 ;;
esac
