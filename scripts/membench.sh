#!/usr/bin/env bash
# membench.sh - `make membench`: resident memory per idle client connection,
# jupiter next to a plain redcon server and twemproxy (nutcracker, if
# installed), in one run. Builds bin/jupiter and test/membench, starts 3
# throw-away redis-servers and jupiter on free loopback ports, runs
#   membench -target JUPITER -pid PID -conns $CONNS -redcon -twemproxy -backends …
# and prints a Markdown table (also saved as $WORK/membench.md). Everything
# it starts is stopped by PID on exit.
#
# Environment (defaults): CONNS=10000 SETTLE=2s WORK=/tmp/jupiter-membench JUPITER_BIN=
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
exec </dev/null

CONNS=${CONNS:-10000}
SETTLE=${SETTLE:-2s}
WORK=${WORK:-/tmp/jupiter-membench}

"$ROOT/scripts/deps.sh" --run
BIN="$(jupiter_bin)"
mkdir -p "$WORK"
go build -o "$WORK/membench" ./test/membench || die "building test/membench failed"

# 10000 idle connections need 10000 descriptors on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((CONNS + 100)) ] ||
	die "CONNS=$CONNS needs RLIMIT_NOFILE > $((CONNS + 100)), hard limit is $(ulimit -Hn)"

stop_on_exit 20
start_backends "$WORK" 27001
backends=()
for p in "${BACKEND_PORTS[@]}"; do backends+=("127.0.0.1:$p"); done
BACKENDS=$(IFS=,; echo "${backends[*]}")

jport=$(free_port 26379) || die "no free port"
"$BIN" serve --listen "127.0.0.1:$jport" --admin-listen "" --backends "$BACKENDS" --log-level warn \
	>"$WORK/jupiter.log" 2>&1 &
JPID=$!
PIDS+=("$JPID")
wait_ping 127.0.0.1 "$jport" || die "jupiter did not answer PING (log $WORK/jupiter.log)"
log "jupiter pid $JPID on 127.0.0.1:$jport, backends $BACKENDS; $CONNS idle conns per server"

"$WORK/membench" -target "127.0.0.1:$jport" -pid "$JPID" -name jupiter -conns "$CONNS" -settle "$SETTLE" \
	-redcon -twemproxy -backends "$BACKENDS" | tee "$WORK/membench.md"
