#!/usr/bin/env bash
# usage: cluster_users_bench.sh BIN_DIR [loadgen users options]
# User sockets on the two-replica cluster (deploy/local-cluster.sh, binaries
# from BIN_DIR, a fresh MariaDB database): N users (default 2,000), each in
# M chats (20), one user socket each, half on each gateway; RSS per idle user
# socket (both gateways), then messages at a fixed rate into random chats.
# LOADGEN picks the load generator (default: target/release/loadgen).
set -e
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin=$(cd "$1" && pwd); shift 1
loadgen=${LOADGEN:-$repo/target/release/loadgen}
db="chat_bench_$$"
export BIN_DIR=$bin DATABASE_URL="mysql://root@127.0.0.1:3306/$db" RUST_LOG=warn NATS_SUBJECT_PREFIX="bench-$$"
export MESSAGE_RATE_PER_SECOND=0 REGISTRATIONS_PER_MINUTE=0
bash "$repo/deploy/local-cluster.sh" up >/dev/null
ulimit -n 20000 2>/dev/null || true
pids="$(cat "$repo/.cluster/gateway-1.pid"),$(cat "$repo/.cluster/gateway-2.pid")"
"$loadgen" users --base http://127.0.0.1:8000 --base2 http://127.0.0.1:8001 --gateway-pids "$pids" "$@" | grep RESULT || true
bash "$repo/deploy/local-cluster.sh" down >/dev/null
mysql -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $db" 2>/dev/null || true
