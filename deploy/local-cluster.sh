#!/usr/bin/env bash
# The distributed deployment on this machine, from the built binaries:
# auth (:50051), chat-metadata (:50052), message-store (:50053) and two
# gateway replicas (:8000, :8001), on local MariaDB and NATS.
#
#   deploy/local-cluster.sh up      build (debug; PROFILE=release for release), start, wait for /health
#   deploy/local-cluster.sh down    stop everything it started
#   deploy/local-cluster.sh status  what runs
#
# Environment: MYSQL_* or DATABASE_URL (default mysql://root@127.0.0.1:3306/chat_cluster),
# NATS_URL (default nats://127.0.0.1:4222), CONTENT_STORE (default sql: no MongoDB here;
# set CONTENT_STORE=mongodb and MONGODB_URL where one runs), GATEWAY_PORTS (default "8000 8001"),
# BIN_DIR (binaries built elsewhere, e.g. an older build to benchmark against: nothing is built).
# State (logs, pids, the generated SECRET_KEY and INTERNAL_TOKEN) lives in .cluster/.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$repo/.cluster"
profile="${PROFILE:-debug}"
bin="${BIN_DIR:-$repo/target/$profile}"
gateway_ports=(${GATEWAY_PORTS:-8000 8001})

say() { printf '\033[1m[local-cluster]\033[0m %s\n' "$*"; }

start() { # name, then env assignments, then --
    local name="$1"; shift
    local envs=()
    while [[ "$1" != "--" ]]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" "$bin/$1" >"$state/$name.log" 2>&1 &
    echo $! >"$state/$name.pid"
    say "started $name (pid $!), log in .cluster/$name.log"
}

wait_http() { # url seconds
    for _ in $(seq 1 $(( $2 * 4 ))); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.25
    done
    return 1
}

up() {
    mkdir -p "$state"
    if ls "$state"/*.pid >/dev/null 2>&1; then
        say "already running (or stale pids): run '$0 down' first"; exit 1
    fi
    bash "$repo/tests/run.sh" --services-only
    local flags=()
    [[ "$profile" == "release" ]] && flags=(--release)
    if [[ -z "${BIN_DIR:-}" ]]; then
        say "building the service binaries ($profile)"
        (cd "$repo" && cargo build "${flags[@]}" --locked -p auth -p chat-metadata -p message-store -p gateway)
    fi
    [[ -f "$state/secret_key" ]] || head -c 48 /dev/urandom | base64 | tr -d '/+=\n' >"$state/secret_key"
    [[ -f "$state/internal_token" ]] || head -c 48 /dev/urandom | base64 | tr -d '/+=\n' >"$state/internal_token"
    local common=(
        "SECRET_KEY=$(cat "$state/secret_key")"
        "INTERNAL_TOKEN=$(cat "$state/internal_token")"
        "DATABASE_URL=${DATABASE_URL:-mysql://root@127.0.0.1:3306/chat_cluster}"
        "NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}"
        "RUST_LOG=${RUST_LOG:-info}"
        "AUTH_GRPC_URL=http://127.0.0.1:50051"
        "METADATA_GRPC_URL=http://127.0.0.1:50052"
        "MESSAGES_GRPC_URL=http://127.0.0.1:50053"
    )
    start auth "${common[@]}" AUTH_GRPC_ADDR=127.0.0.1:50051 METRICS_ADDR=127.0.0.1:9101 -- auth
    start chat-metadata "${common[@]}" METADATA_GRPC_ADDR=127.0.0.1:50052 METRICS_ADDR=127.0.0.1:9102 -- chat-metadata
    start message-store "${common[@]}" MESSAGES_GRPC_ADDR=127.0.0.1:50053 METRICS_ADDR=127.0.0.1:9103 "CONTENT_STORE=${CONTENT_STORE:-sql}" -- message-store
    local n=1
    for port in "${gateway_ports[@]}"; do
        start "gateway-$n" "${common[@]}" HOST=127.0.0.1 "PORT=$port" "GATEWAY_REPLICA=gateway-$n" "METRICS_ADDR=127.0.0.1:$((9109 + n))" -- gateway
        n=$((n + 1))
    done
    for port in "${gateway_ports[@]}"; do
        if ! wait_http "http://127.0.0.1:$port/health" 60; then
            say "the gateway on :$port is not healthy after 60 s; last log lines:"
            for log in "$state"/*.log; do echo "== $log"; tail -n 5 "$log"; done
            down; exit 1
        fi
    done
    say "up: http://127.0.0.1:${gateway_ports[0]} (docs at /docs)$( ((${#gateway_ports[@]} > 1)) && echo " and http://127.0.0.1:${gateway_ports[1]}")"
}

down() {
    shopt -s nullglob
    for pidfile in "$state"/*.pid; do
        local pid; pid="$(cat "$pidfile")"
        kill "$pid" 2>/dev/null && say "stopping $(basename "$pidfile" .pid) (pid $pid)"
    done
    for pidfile in "$state"/*.pid; do
        local pid; pid="$(cat "$pidfile")"
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$pidfile"
    done
}

status() {
    shopt -s nullglob
    for pidfile in "$state"/*.pid; do
        local pid; pid="$(cat "$pidfile")"
        if kill -0 "$pid" 2>/dev/null; then echo "$(basename "$pidfile" .pid): running (pid $pid)"; else echo "$(basename "$pidfile" .pid): dead"; fi
    done
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
