#!/usr/bin/env bash
# usage: send_bench.sh BIN_DIR PORT — persisted sends/s on a fresh standalone server (64 clients, 10 s)
set -e
bin=$1; port=$2; data=$(mktemp -d)
DATA_DIR=$data PORT=$port HOST=127.0.0.1 RUST_LOG=warn MESSAGE_RATE_PER_SECOND=0 LOGIN_FAILURES_PER_MINUTE=0 LOGIN_FAILURES_PER_MINUTE_PER_ADDRESS=0 REGISTRATIONS_PER_MINUTE=0 $bin/chat-server >$data/log 2>&1 &
pid=$!
for i in $(seq 1 100); do curl -fs http://127.0.0.1:$port/health >/dev/null && break; sleep 0.1; done
$bin/loadgen send --base http://127.0.0.1:$port --clients 64 --seconds 10 | grep RESULT
kill $pid; wait $pid 2>/dev/null; rm -rf $data
