#!/usr/bin/env bash
# The test command (README, .ci/run): makes sure MariaDB and NATS are running
# (starting them when installed but stopped), then runs every test of the
# workspace (`cargo test --workspace`), then, against a freshly started
# standalone server, the black-box acceptance suite (when ../shared/acceptance
# exists) and Schemathesis (tests/schemathesis: the server against its own
# OpenAPI document), and the acceptance suite again against the local cluster.
#
#   tests/run.sh                 everything
#   tests/run.sh --no-acceptance only the cargo tests (no acceptance, no Schemathesis)
#   tests/run.sh --services-only only make sure MariaDB and NATS run
#   TEST_MYSQL_URL=mysql://user:pw@host:3306 tests/run.sh   another MariaDB/MySQL
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

acceptance=1
services_only=0
[[ "${1:-}" == "--no-acceptance" ]] && acceptance=0
[[ "${1:-}" == "--services-only" ]] && services_only=1

say() { printf '\033[1m[tests/run.sh]\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31m[tests/run.sh] %s\033[0m\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() { # host port seconds
    for _ in $(seq 1 $(( $3 * 4 ))); do
        port_open "$1" "$2" && return 0
        sleep 0.25
    done
    return 1
}

mysql_url="${TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306}"
mysql_hostport="${mysql_url#*://}"; mysql_hostport="${mysql_hostport#*@}"; mysql_hostport="${mysql_hostport%%/*}"
mysql_host="${mysql_hostport%:*}"; mysql_port="${mysql_hostport##*:}"
[[ "$mysql_port" == "$mysql_host" ]] && mysql_port=3306

ensure_mariadb() {
    port_open "$mysql_host" "$mysql_port" && return 0
    if [[ -n "${TEST_MYSQL_URL:-}" ]]; then
        fail "MariaDB/MySQL is not reachable at $mysql_host:$mysql_port (TEST_MYSQL_URL); start it first."
    fi
    local daemon
    daemon="$(command -v mariadbd || command -v mysqld || ls /usr/sbin/mariadbd /usr/sbin/mysqld 2>/dev/null | head -1 || true)"
    [[ -n "$daemon" ]] || fail "MariaDB is not installed and nothing listens on $mysql_host:$mysql_port. Install it (Debian/Ubuntu: apt-get install mariadb-server) or set TEST_MYSQL_URL."
    say "MariaDB is installed but not running: starting $daemon"
    if command -v start-stop-daemon >/dev/null; then
        start-stop-daemon --start --oknodo --background --exec "$daemon"
    else
        nohup "$daemon" >/dev/null 2>&1 &
    fi
    wait_port "$mysql_host" "$mysql_port" 30 || fail "started MariaDB, but nothing listens on $mysql_host:$mysql_port after 30 s"
}

ensure_nats() {
    port_open 127.0.0.1 4222 && return 0
    local daemon
    daemon="$(command -v nats-server || ls /usr/sbin/nats-server 2>/dev/null || true)"
    [[ -n "$daemon" ]] || fail "NATS is not installed and nothing listens on 127.0.0.1:4222. Install nats-server (Debian/Ubuntu: apt-get install nats-server)."
    say "NATS is installed but not running: starting $daemon with JetStream"
    local store="${TMPDIR:-/tmp}/chat-tests-nats"
    mkdir -p "$store"
    nohup "$daemon" -a 127.0.0.1 -p 4222 -js -sd "$store" >"$store/nats.log" 2>&1 &
    wait_port 127.0.0.1 4222 15 || fail "started nats-server, but nothing listens on 127.0.0.1:4222 after 15 s"
}

# Tests drop their databases; a killed run leaves some behind. Only for the default local server.
drop_stale_test_databases() {
    [[ -z "${TEST_MYSQL_URL:-}" ]] && command -v mysql >/dev/null || return 0
    local stale
    stale="$(mysql -h 127.0.0.1 -u root -N -e \
        "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE '%\\_test\\_%'" 2>/dev/null || true)"
    for db in $stale; do
        mysql -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS \`$db\`" 2>/dev/null || true
    done
}

ensure_mariadb
ensure_nats
drop_stale_test_databases
say "MariaDB at $mysql_host:$mysql_port and NATS at 127.0.0.1:4222 are up"
(( services_only )) && exit 0

if [[ -z "${MONGODB_URL:-}" ]]; then
    printf '\033[1;33m[tests/run.sh] SKIPPED: the MongoDB content store tests (services/message-store/tests/mongodb.rs) need MONGODB_URL; no MongoDB server on this machine. The BSON mapping and queries are unit-tested.\033[0m\n'
fi
if cargo fmt --version >/dev/null 2>&1; then
    say "cargo fmt --check"
    cargo fmt --all --check || fail "formatting differs: run cargo fmt --all"
fi
say "cargo build --workspace --bins (the cluster tests start the gateway binary)"
cargo build --workspace --bins --locked
say "cargo test --workspace"
cargo test --workspace --locked

if (( acceptance )); then
    suite="$repo/../shared/acceptance"
    have_suite=1
    if [[ ! -x "$suite/run.sh" ]]; then
        say "no acceptance suite at $suite: skipped (it lives beside the repo in shared/); Schemathesis still runs"
        have_suite=0
    fi
    data="$(mktemp -d)"
    server=""
    cleanup() {
        [[ -n "$server" ]] && { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
        bash "$repo/deploy/local-cluster.sh" down >/dev/null 2>&1 || true
        rm -rf "$data"
    }
    trap cleanup EXIT

    port="${ACCEPTANCE_PORT:-18000}"
    say "the standalone server on 127.0.0.1:$port (data in $data)"
    DATA_DIR="$data" HOST=127.0.0.1 PORT="$port" METRICS_ADDR=off RUST_LOG=warn "$repo/target/debug/chat-server" >"$data/server.log" 2>&1 &
    server=$!
    if (( have_suite )); then
        say "acceptance 1/2: the standalone server"
        if ! BASE_URL="http://127.0.0.1:$port" "$suite/run.sh" -q; then
            say "acceptance failed on the standalone server; its log:"; tail -50 "$data/server.log" >&2
            exit 1
        fi
    fi
    say "Schemathesis against the standalone server's OpenAPI document (tests/schemathesis/run.sh)"
    for _ in $(seq 1 40); do curl -fs -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.25; done
    if ! bash "$repo/tests/schemathesis/run.sh" "http://127.0.0.1:$port" >"$data/schemathesis.log" 2>&1; then
        tail -80 "$data/schemathesis.log" >&2
        fail "Schemathesis found problems (above)"
    fi
    tail -3 "$data/schemathesis.log"
    kill "$server"; wait "$server" 2>/dev/null || true; server=""
    (( have_suite )) || exit 0

    say "acceptance 2/2: the distributed deployment (deploy/local-cluster.sh), two gateway replicas"
    export GATEWAY_PORTS="${ACCEPTANCE_CLUSTER_PORTS:-18001 18002}"
    export DATABASE_URL="${TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306}/chat_acceptance_$$"
    bash "$repo/deploy/local-cluster.sh" up
    read -r first second <<<"$GATEWAY_PORTS"
    if ! BASE_URL="http://127.0.0.1:$first" BASE_URL_2="http://127.0.0.1:$second" "$suite/run.sh" -q; then
        say "acceptance failed on the cluster; its logs are in .cluster/"
        exit 1
    fi
    command -v mysql >/dev/null && [[ -z "${TEST_MYSQL_URL:-}" ]] && mysql -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS chat_acceptance_$$" || true
fi
