#!/usr/bin/env bash
# Soak test: 3 redis-servers + jupiter (built from ./cmd/jupiter) on loopback
# ports, the soak load from ./test/soak for SOAK_DURATION (default 2m), one
# redis-server killed (SIGKILL) and restarted halfway, then the report.
# Everything this script starts is stopped on exit, whatever happens.
#
#   test/soak/run.sh                      # 2 minutes
#   SOAK_DURATION=60s test/soak/run.sh
#
# Environment: SOAK_DURATION (2m), SOAK_CONNS (200), SOAK_PIPELINE (16),
# SOAK_BASE_PORT (first port tried, 17000), SOAK_ARGS (extra soak flags),
# JUPITER_ARGS (extra `jupiter serve` flags), KEEP=1 keeps the work directory.
set -euo pipefail

cd "$(dirname "$0")/../.."
DURATION=${SOAK_DURATION:-2m}
CONNS=${SOAK_CONNS:-200}
PIPELINE=${SOAK_PIPELINE:-16}
NEXT_PORT=${SOAK_BASE_PORT:-17000}

for bin in redis-server redis-cli go; do
	command -v "$bin" >/dev/null || { echo "run.sh: $bin not on PATH" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/jupiter-soak.XXXXXX")
PIDS=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for f in "$WORK"/redis-*.pid; do
		[[ -f $f ]] && kill -KILL "$(cat "$f")" 2>/dev/null || true
	done
	sleep 0.5
	for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	if [[ $rc -ne 0 && -f $WORK/jupiter.log ]]; then
		echo "---- last lines of jupiter's log ----"
		tail -n 20 "$WORK/jupiter.log"
	fi
	if [[ ${KEEP:-0} == 1 ]]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port VAR sets VAR to the next loopback port nobody listens on (not in
# a subshell: NEXT_PORT must advance, so two calls never return one port).
free_port() {
	while (exec 3<>"/dev/tcp/127.0.0.1/$NEXT_PORT") 2>/dev/null; do NEXT_PORT=$((NEXT_PORT + 1)); done
	printf -v "$1" '%s' "$NEXT_PORT"
	NEXT_PORT=$((NEXT_PORT + 1))
}

wait_port() { # host:port seconds
	local i
	for ((i = 0; i < $2 * 20; i++)); do
		(exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "run.sh: nothing listens on $1 after $2s" >&2
	return 1
}

echo "building jupiter and the soak client…"
go build -o "$WORK/jupiter" ./cmd/jupiter
go build -o "$WORK/soak" ./test/soak

# redis-servers: daemonized with a pid file each, so a restart (a new pid)
# is still found by cleanup.
start_redis() { # index port
	mkdir -p "$WORK/redis-$1"
	redis-server --port "$2" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no \
		--dir "$WORK/redis-$1" --daemonize yes --pidfile "$WORK/redis-$1.pid" \
		--logfile "$WORK/redis-$1/redis.log"
	wait_port "127.0.0.1:$2" 10
}
REDIS_PORTS=()
for i in 1 2 3; do
	free_port p
	REDIS_PORTS+=("$p")
	start_redis "$i" "$p"
done
BACKENDS="127.0.0.1:${REDIS_PORTS[0]},127.0.0.1:${REDIS_PORTS[1]},127.0.0.1:${REDIS_PORTS[2]}"

free_port JUPITER_PORT
free_port ADMIN_PORT
# shellcheck disable=SC2086
"$WORK/jupiter" serve --listen "127.0.0.1:$JUPITER_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" \
	--backends "$BACKENDS" --log-format json ${JUPITER_ARGS:-} >"$WORK/jupiter.log" 2>&1 &
PIDS+=($!)
wait_port "127.0.0.1:$JUPITER_PORT" 30
wait_port "127.0.0.1:$ADMIN_PORT" 10

# Halfway: SIGKILL redis #2 (the soak does it), 2s outage, restart it empty
# on the same port.
RESTART="redis-server --port ${REDIS_PORTS[1]} --bind 127.0.0.1 --save '' --appendonly no --protected-mode no \
--dir '$WORK/redis-2' --daemonize yes --pidfile '$WORK/redis-2.pid' --logfile '$WORK/redis-2/redis.log' && echo restarted redis 127.0.0.1:${REDIS_PORTS[1]}"
KILL_PID=$(cat "$WORK/redis-2.pid")

echo "redis: $BACKENDS  jupiter: 127.0.0.1:$JUPITER_PORT  admin: 127.0.0.1:$ADMIN_PORT"
echo "halfway: SIGKILL redis 127.0.0.1:${REDIS_PORTS[1]} (pid $KILL_PID), restart it 2s later"
set +e
# shellcheck disable=SC2086
"$WORK/soak" -addr "127.0.0.1:$JUPITER_PORT" -admin "127.0.0.1:$ADMIN_PORT" -duration "$DURATION" \
	-conns "$CONNS" -pipeline "$PIPELINE" -kill-pid "$KILL_PID" -restart-cmd "$RESTART" -restart-delay 2s ${SOAK_ARGS:-}
rc=$?
set -e

# jupiter must still be the same process, with the same ring.
if ! kill -0 "${PIDS[0]}" 2>/dev/null; then
	echo "jupiter DIED during the soak"
	rc=1
else
	echo "jupiter still running (pid ${PIDS[0]}); JUPITER STATUS:"
	redis-cli -h 127.0.0.1 -p "$JUPITER_PORT" --raw JUPITER STATUS | tr -d '\r' | grep -E '^(ring_version|nodes|nodes_up):' | sed 's/^/  /'
fi
exit "$rc"
