#!/usr/bin/env bash
# usage: fanout_bench.sh BIN_DIR PORT RATE [loadgen fanout options]
# Fanout on a fresh standalone server from BIN_DIR: a 100-member group, every
# member's socket open (half on each of two connections' worth of the one
# server), one sender at RATE messages/s for 10 s; deliveries/s, exactly-once
# count and send→receive latency. LOADGEN picks the load generator (default:
# BIN_DIR/loadgen).
set -e
bin=$1; port=$2; rate=$3; shift 3
loadgen=${LOADGEN:-$bin/loadgen}
data=$(mktemp -d)
DATA_DIR=$data PORT=$port HOST=127.0.0.1 RUST_LOG=warn METRICS_ADDR=off MESSAGE_RATE_PER_SECOND=0 REGISTRATIONS_PER_MINUTE=0 $bin/chat-server >$data/log 2>&1 &
pid=$!
for i in $(seq 1 100); do curl -fs http://127.0.0.1:$port/health >/dev/null && break; sleep 0.1; done
"$loadgen" fanout --base http://127.0.0.1:$port --base2 http://127.0.0.1:$port --members 100 --rate "$rate" --seconds 10 "$@" | grep RESULT
kill $pid; wait $pid 2>/dev/null; rm -rf $data
