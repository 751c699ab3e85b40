#!/usr/bin/env bash
# usage: send_bench.sh BIN_DIR PORT [loadgen send options]
# Persisted sends/s, latency and server CPU µs per send on a fresh standalone
# server from BIN_DIR (64 clients, 10 s unless the options say otherwise).
# LOADGEN picks the load generator (default: BIN_DIR/loadgen), so that two
# server builds can be measured with the same one.
set -e
bin=$1; port=$2; shift 2
loadgen=${LOADGEN:-$bin/loadgen}
data=$(mktemp -d)
DATA_DIR=$data PORT=$port HOST=127.0.0.1 RUST_LOG=warn METRICS_ADDR=off MESSAGE_RATE_PER_SECOND=0 LOGIN_FAILURES_PER_MINUTE=0 LOGIN_FAILURES_PER_MINUTE_PER_ADDRESS=0 REGISTRATIONS_PER_MINUTE=0 $bin/chat-server >$data/log 2>&1 &
pid=$!
for i in $(seq 1 100); do curl -fs http://127.0.0.1:$port/health >/dev/null && break; sleep 0.1; done
"$loadgen" send --base http://127.0.0.1:$port --clients 64 --seconds 10 --server-pids $pid "$@" | grep RESULT
kill $pid; wait $pid 2>/dev/null; rm -rf $data
