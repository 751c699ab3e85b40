#!/usr/bin/env bash
# usage: users_bench.sh BIN_DIR PORT [loadgen users options]
# User sockets on a fresh standalone server from BIN_DIR (both "gateways" are
# the one server): N users each in M chats, one user socket each; RSS per
# idle user socket, then messages at a fixed rate into random chats.
# LOADGEN picks the load generator (default: BIN_DIR/loadgen).
set -e
bin=$1; port=$2; shift 2
loadgen=${LOADGEN:-$bin/loadgen}
data=$(mktemp -d)
DATA_DIR=$data PORT=$port HOST=127.0.0.1 RUST_LOG=warn METRICS_ADDR=off MESSAGE_RATE_PER_SECOND=0 REGISTRATIONS_PER_MINUTE=0 $bin/chat-server >$data/log 2>&1 &
pid=$!
for i in $(seq 1 100); do curl -fs http://127.0.0.1:$port/health >/dev/null && break; sleep 0.1; done
ulimit -n 20000 2>/dev/null || true
"$loadgen" users --base http://127.0.0.1:$port --base2 http://127.0.0.1:$port --gateway-pids $pid "$@" | grep RESULT || true
kill $pid; wait $pid 2>/dev/null; rm -rf $data
