#!/usr/bin/env bash
# usage: cluster_send_bench.sh BIN_DIR [loadgen send options]
# Persisted sends/s on the two-replica cluster (deploy/local-cluster.sh, binaries
# from BIN_DIR, a fresh MariaDB database), 64 clients split over both gateways for
# 10 s; CPU µs per send charged to every process of the deployment (the four
# services, both gateways, MariaDB, NATS). LOADGEN picks the load generator
# (default: target/release/loadgen).
set -e
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin=$(cd "$1" && pwd); shift
loadgen=${LOADGEN:-$repo/target/release/loadgen}
db="chat_bench_$$"
export BIN_DIR=$bin DATABASE_URL="mysql://root@127.0.0.1:3306/$db" RUST_LOG=warn NATS_SUBJECT_PREFIX="bench-$$"
export MESSAGE_RATE_PER_SECOND=0 REGISTRATIONS_PER_MINUTE=0 LOGIN_FAILURES_PER_MINUTE=0 LOGIN_FAILURES_PER_MINUTE_PER_ADDRESS=0
bash "$repo/deploy/local-cluster.sh" up >/dev/null
pids=$(cat "$repo"/.cluster/*.pid | tr '\n' ',')$(pgrep -x mariadbd | head -1),$(pgrep -x nats-server | head -1)
"$loadgen" send --base http://127.0.0.1:8000 --base2 http://127.0.0.1:8001 --clients 64 --seconds 10 --server-pids "$pids" "$@" | grep RESULT
bash "$repo/deploy/local-cluster.sh" down >/dev/null
mysql -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $db" 2>/dev/null || true
