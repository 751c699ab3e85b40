#!/usr/bin/env bash
# usage: cluster_fanout_bench.sh BIN_DIR RATE [loadgen fanout options]
# Fanout on the two-replica cluster (deploy/local-cluster.sh, binaries from
# BIN_DIR, a fresh MariaDB database): a 100-member group with half its
# members' sockets on each gateway, one sender at RATE messages/s for 10 s.
# LOADGEN picks the load generator (default: target/release/loadgen).
set -e
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin=$(cd "$1" && pwd); rate=$2; shift 2
loadgen=${LOADGEN:-$repo/target/release/loadgen}
db="chat_bench_$$"
export BIN_DIR=$bin DATABASE_URL="mysql://root@127.0.0.1:3306/$db" RUST_LOG=warn NATS_SUBJECT_PREFIX="bench-$$"
export MESSAGE_RATE_PER_SECOND=0 REGISTRATIONS_PER_MINUTE=0
bash "$repo/deploy/local-cluster.sh" up >/dev/null
"$loadgen" fanout --base http://127.0.0.1:8000 --base2 http://127.0.0.1:8001 --members 100 --rate "$rate" --seconds 10 "$@" | grep RESULT || true
bash "$repo/deploy/local-cluster.sh" down >/dev/null
mysql -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $db" 2>/dev/null || true
