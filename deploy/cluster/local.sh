#!/usr/bin/env bash
# A local cluster of each of Tidings' dependencies, on this machine, for the cluster tests and
# for trying failover by hand (docs/clusters.md):
#
#   RabbitMQ  three nodes clustered, tidings-c1..c3@localhost, AMQP 5681..5683
#   PostgreSQL a primary (5441) and a streaming standby (5442), promotable
#   Redis     a master (6391), a replica (6392) and three Sentinels (26391..26393), "tidings"
#
# Everything is its own: node names, ports, an epmd of its own (port 4391), data dirs under
# $LOCAL_CLUSTER_DIR (default /tmp/tidings-cluster). The machine's own RabbitMQ, PostgreSQL and
# Redis are never touched. Bound to 127.0.0.1 only.
#
#   local.sh up [rabbit|pg|redis]...     start (all three when none is named); idempotent
#   local.sh down [rabbit|pg|redis]...   stop and delete the data
#   local.sh env                         the TIDINGS_* variables that point at the cluster
#   local.sh status
#   local.sh rabbit-start N | rabbit-kill N      start / kill -9 node N (1..3)
#   local.sh pg-stop-primary | pg-promote        stop the primary (immediate) / promote the standby
#   local.sh pg-rebuild                          a fresh primary and standby (data deleted)
#   local.sh redis-kill-master | redis-start PORT  kill -9 the master of the moment / start one
#   local.sh redis-master                        the master's port, as Sentinel tells
set -euo pipefail

BASE=${LOCAL_CLUSTER_DIR:-/tmp/tidings-cluster}
RABBIT_PORTS=(5681 5682 5683)
RABBIT_DIST_PORTS=(25681 25682 25683)
EPMD_PORT=4391
PG_PRIMARY_PORT=5441
PG_STANDBY_PORT=5442
REDIS_PORTS=(6391 6392)
SENTINEL_PORTS=(26391 26392 26393)
SENTINEL_NAME=tidings

log() { printf 'local.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# --- RabbitMQ ----------------------------------------------------------------------------

RABBIT_SBIN=/usr/lib/rabbitmq/bin
[ -x "$RABBIT_SBIN/rabbitmq-server" ] || RABBIT_SBIN=$(dirname "$(command -v rabbitmq-server || echo /x/none)")

rabbit_env() { # node index (1..3): the environment of that node's server and CLI
    local n=$1 dir=$BASE/rabbit/c$1
    export HOME=$BASE/rabbit/home            # its own Erlang cookie, not the machine's
    export ERL_EPMD_PORT=$EPMD_PORT ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_CONF_ENV_FILE=$BASE/rabbit/rabbitmq-env.conf  # not /etc/rabbitmq's
    export RABBITMQ_NODENAME=tidings-c$n@localhost
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT=${RABBIT_PORTS[$((n - 1))]}
    export RABBITMQ_DIST_PORT=${RABBIT_DIST_PORTS[$((n - 1))]}
    export RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf
    export RABBITMQ_ADVANCED_CONFIG_FILE=$dir/advanced.config
    export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins  # none: no management listener
    export RABBITMQ_MNESIA_BASE=$dir/mnesia RABBITMQ_LOG_BASE=$dir/log
    export RABBITMQ_PID_FILE=$dir/pid
    # Two cores shared by three nodes: few schedulers each, no busy waiting.
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} +S 2:2 +sbwt none +sbwtdcpu none +sbwtdio none"
}

rabbitctl() { # node index, args...
    local n=$1; shift
    (rabbit_env "$n" && "$RABBIT_SBIN/rabbitmqctl" -n "tidings-c$n@localhost" "$@")
}

rabbit_pid() { cat "$BASE/rabbit/c$1/pid" 2>/dev/null || true; }

rabbit_alive() { local pid; pid=$(rabbit_pid "$1"); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

rabbit_start_node() {
    local n=$1 dir=$BASE/rabbit/c$1
    rabbit_alive "$n" && return 0
    rm -f "$dir/pid"  # left by a node killed -9
    mkdir -p "$dir/mnesia" "$dir/log"
    cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:${RABBIT_PORTS[$((n - 1))]}
loopback_users = none
cluster_partition_handling = pause_minority
log.console = false
log.file.level = warning
EOF
    echo '[].' >"$dir/advanced.config"
    echo '[].' >"$dir/enabled_plugins"
    (rabbit_env "$n" && exec "$RABBIT_SBIN/rabbitmq-server" >>"$dir/log/stdout.log" 2>&1) &
    disown
    rabbitctl "$n" wait "$dir/pid" --timeout 120 >/dev/null || die "rabbit node $n did not start (see $dir/log)"
}

rabbit_up() {
    mkdir -p "$BASE/rabbit/home"
    if [ ! -f "$BASE/rabbit/home/.erlang.cookie" ]; then
        head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$BASE/rabbit/home/.erlang.cookie"
        chmod 400 "$BASE/rabbit/home/.erlang.cookie"
    fi
    : >"$BASE/rabbit/rabbitmq-env.conf"
    for n in 1 2 3; do rabbit_start_node "$n"; done
    for n in 2 3; do
        if ! rabbitctl 1 cluster_status --formatter json 2>/dev/null | grep -q "tidings-c$n@localhost"; then
            rabbitctl "$n" stop_app >/dev/null
            rabbitctl "$n" join_cluster tidings-c1@localhost >/dev/null
            rabbitctl "$n" start_app >/dev/null
        fi
    done
    log "rabbitmq: 3 nodes on 127.0.0.1:${RABBIT_PORTS[*]}"
}

rabbit_down() {
    for n in 1 2 3; do
        local pid; pid=$(rabbit_pid "$n")
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            rabbitctl "$n" stop >/dev/null 2>&1 || kill -9 "$pid" 2>/dev/null || true
        fi
    done
    # Our epmd only (its own port), never the machine's.
    ERL_EPMD_PORT=$EPMD_PORT epmd -kill >/dev/null 2>&1 || true
    rm -rf "$BASE/rabbit"
}

# --- PostgreSQL --------------------------------------------------------------------------

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_conf() { # data dir, port
    cat >>"$1/postgresql.conf" <<EOF
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$BASE/pg'
wal_level = replica
max_wal_senders = 5
max_connections = 500
hot_standby = on
fsync = off
synchronous_commit = on
full_page_writes = on
shared_buffers = 64MB
EOF
}

pg_running() { as_pg "$PG_BIN/pg_ctl" -D "$1" status >/dev/null 2>&1; }

pg_up() {
    [ -n "$PG_BIN" ] || die "no PostgreSQL binaries under /usr/lib/postgresql"
    mkdir -p "$BASE/pg"
    chown postgres: "$BASE/pg" 2>/dev/null || true
    local primary=$BASE/pg/primary standby=$BASE/pg/standby
    if [ ! -d "$primary" ]; then
        as_pg "$PG_BIN/initdb" -D "$primary" -U postgres --auth=trust -E UTF8 >/dev/null
        pg_conf "$primary" "$PG_PRIMARY_PORT"
        echo "host replication all 127.0.0.1/32 trust" >>"$primary/pg_hba.conf"
    fi
    pg_running "$primary" || as_pg "$PG_BIN/pg_ctl" -D "$primary" -l "$BASE/pg/primary.log" -w start >/dev/null
    as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PRIMARY_PORT" -U postgres -qtAc \
        "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='root') THEN CREATE ROLE root SUPERUSER LOGIN; END IF; END\$\$" postgres
    if [ ! -d "$standby" ]; then
        as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PG_PRIMARY_PORT" -U postgres -D "$standby" -R -X stream >/dev/null
        sed -i "s/^port = $PG_PRIMARY_PORT/port = $PG_STANDBY_PORT/" "$standby/postgresql.conf"
    fi
    pg_running "$standby" || as_pg "$PG_BIN/pg_ctl" -D "$standby" -l "$BASE/pg/standby.log" -w start >/dev/null
    log "postgresql: primary 127.0.0.1:$PG_PRIMARY_PORT, standby 127.0.0.1:$PG_STANDBY_PORT"
}

pg_down() {
    for d in "$BASE/pg/primary" "$BASE/pg/standby"; do
        if [ -d "$d" ] && pg_running "$d"; then
            as_pg "$PG_BIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null
        fi
    done
    rm -rf "$BASE/pg"
}

# --- Redis -------------------------------------------------------------------------------

redis_pid() { cat "$BASE/redis/$1.pid" 2>/dev/null || true; }

redis_conf() { # port, then the lines of its own: one process's config file
    local port=$1; shift
    printf '%s\n' "bind 127.0.0.1" "port $port" "daemonize yes" "pidfile $BASE/redis/$port.pid" \
        "logfile $BASE/redis/$port.log" "dir $BASE/redis" "$@" >"$BASE/redis/$port.conf"
}

redis_up() {
    command -v redis-server >/dev/null || die "no redis-server"
    mkdir -p "$BASE/redis"
    local m=${REDIS_PORTS[0]} port pid
    for port in "${REDIS_PORTS[@]}"; do
        pid=$(redis_pid "$port")
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && continue
        local extra=()
        [ "$port" != "$m" ] && extra=("replicaof 127.0.0.1 $m")
        redis_conf "$port" "dbfilename $port.rdb" 'save ""' "appendonly no" "${extra[@]}"
        redis-server "$BASE/redis/$port.conf"
    done
    for port in "${SENTINEL_PORTS[@]}"; do
        pid=$(redis_pid "$port")
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && continue
        redis_conf "$port" "sentinel monitor $SENTINEL_NAME 127.0.0.1 $m 2" \
            "sentinel down-after-milliseconds $SENTINEL_NAME 1000" \
            "sentinel failover-timeout $SENTINEL_NAME 5000" "sentinel parallel-syncs $SENTINEL_NAME 1"
        redis-server "$BASE/redis/$port.conf" --sentinel
    done
    for port in "${REDIS_PORTS[@]}" "${SENTINEL_PORTS[@]}"; do
        for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    done
    log "redis: master $m, replica ${REDIS_PORTS[1]}, sentinels ${SENTINEL_PORTS[*]} ($SENTINEL_NAME)"
}

redis_down() {
    for port in "${SENTINEL_PORTS[@]}" "${REDIS_PORTS[@]}"; do
        local pid; pid=$(redis_pid "$port")
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$BASE/redis"
}

redis_master_port() {
    redis-cli -p "${SENTINEL_PORTS[0]}" sentinel get-master-addr-by-name "$SENTINEL_NAME" | sed -n 2p
}

# --- commands ----------------------------------------------------------------------------

env_lines() {
    local amqp="" s
    for p in "${RABBIT_PORTS[@]}"; do amqp+="${amqp:+,}amqp://guest:guest@127.0.0.1:$p/"; done
    s=$(printf '127.0.0.1:%s,' "${SENTINEL_PORTS[@]}")
    echo "TIDINGS_AMQP_URL=$amqp"
    echo "TIDINGS_DATABASE_URL=postgresql://root@/tidings?host=127.0.0.1:$PG_PRIMARY_PORT&host=127.0.0.1:$PG_STANDBY_PORT&target_session_attrs=read-write"
    echo "TIDINGS_REDIS_URL=redis+sentinel://${s%,}/$SENTINEL_NAME/0"
}

parts() { if [ $# -eq 0 ]; then echo rabbit pg redis; else echo "$@"; fi; }

cmd=${1:-}; shift || true
case "$cmd" in
    up)
        mkdir -p "$BASE"
        for p in $(parts "$@"); do "${p}_up"; done
        if [ $# -eq 0 ]; then env_lines; fi
        ;;
    down) for p in $(parts "$@"); do "${p}_down"; done ;;
    env) env_lines ;;
    status)
        for n in 1 2 3; do echo "rabbit c$n: $(rabbit_alive "$n" && echo up || echo down)"; done
        for d in primary standby; do
            echo "pg $d: $([ -d "$BASE/pg/$d" ] && pg_running "$BASE/pg/$d" && echo up || echo down)"
        done
        echo "redis master: $(redis_master_port 2>/dev/null || echo none)"
        ;;
    rabbit-start) rabbit_start_node "$1" ;;
    rabbit-kill) pid=$(rabbit_pid "$1"); [ -n "$pid" ] && kill -9 "$pid" ;;
    rabbitmqctl) n=$1; shift; rabbitctl "$n" "$@" ;;
    pg-stop-primary) as_pg "$PG_BIN/pg_ctl" -D "$BASE/pg/primary" -m immediate -w stop >/dev/null ;;
    pg-promote) as_pg "$PG_BIN/pg_ctl" -D "$BASE/pg/standby" -w promote >/dev/null ;;
    redis-kill-master)
        port=$(redis_master_port); pid=$(redis_pid "$port"); [ -n "$pid" ] && kill -9 "$pid"; echo "$port"
        ;;
    redis-master) redis_master_port ;;
    redis-start) redis-server "$BASE/redis/$1.conf" ;;  # back as a replica: Sentinel sees to it
    pg-rebuild) pg_down; pg_up ;;  # a fresh primary and standby (after a promotion)
    *) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
