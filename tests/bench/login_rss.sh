#!/usr/bin/env bash
# usage: login_rss.sh BIN_DIR PORT  — RSS of a fresh standalone server before and after ~1,000+ logins (48 at once)
set -e
bin=$1; port=$2; data=$(mktemp -d)
DATA_DIR=$data PORT=$port HOST=127.0.0.1 RUST_LOG=warn MESSAGE_RATE_PER_SECOND=0 LOGIN_FAILURES_PER_MINUTE=0 LOGIN_FAILURES_PER_MINUTE_PER_ADDRESS=0 REGISTRATIONS_PER_MINUTE=0 $bin/chat-server >$data/log 2>&1 &
pid=$!
for i in $(seq 1 100); do curl -fs http://127.0.0.1:$port/health >/dev/null && break; sleep 0.1; done
echo "rss_start_kb $(awk '/VmRSS/{print $2}' /proc/$pid/status)"
$bin/loadgen login --base http://127.0.0.1:$port --clients 48 --seconds 20 | grep RESULT
echo "rss_after_kb $(awk '/VmRSS/{print $2}' /proc/$pid/status)"
sleep 5
echo "rss_5s_later_kb $(awk '/VmRSS/{print $2}' /proc/$pid/status)"
kill $pid; wait $pid 2>/dev/null; rm -rf $data
