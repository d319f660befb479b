#!/usr/bin/env bash
# run.sh - `make run`: jupiter in the foreground in front of 3 throw-away
# redis-server nodes, on a fresh machine too.
#
#   scripts/run.sh [extra `jupiter serve` flags]
#
# 1. installs redis-server/redis-tools if missing (scripts/deps.sh --run),
# 2. builds bin/jupiter (make build),
# 3. starts 3 redis-servers on 127.0.0.1:7001-7003 in a scratch dir (no
#    persistence); a busy default port is replaced by the next free one,
# 4. runs `jupiter serve --listen :6379 --admin-listen :9090 --backends …`
#    in the foreground until Ctrl-C (or SIGTERM), then stops jupiter (graceful
#    drain) and the redis-servers it started, by PID, and removes the scratch dir.
#
# Environment (defaults):
#   LISTEN=:6379 ADMIN_LISTEN=:9090   jupiter's RESP and HTTP addresses
#   REDIS_PORTS="7001 7002 7003"      backend ports (set explicitly = must be free)
#   RUN_DIR=                          scratch dir (default: a new /tmp/jupiter-run.*,
#                                     removed on exit; a given RUN_DIR is kept)
#   JUPITER_BIN=                      use this binary instead of building bin/jupiter
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exec </dev/null

LISTEN=${LISTEN:-:6379}
ADMIN_LISTEN=${ADMIN_LISTEN:-:9090}
ports_given=${REDIS_PORTS:+1}
REDIS_PORTS=${REDIS_PORTS:-"7001 7002 7003"}

"$ROOT/scripts/deps.sh" --run
BIN="$(jupiter_bin)"

lport=${LISTEN##*:}
aport=${ADMIN_LISTEN##*:}
port_busy "$lport" && die "port $lport (LISTEN=$LISTEN) is in use; try LISTEN=:6380 make run"
[ -n "$aport" ] && port_busy "$aport" && die "port $aport (ADMIN_LISTEN=$ADMIN_LISTEN) is in use; try ADMIN_LISTEN=:9091 make run"

# Backend ports: the defaults move to free ports when taken; given ones must be free.
read -r -a want <<<"$REDIS_PORTS"
[ ${#want[@]} -ge 1 ] || die "REDIS_PORTS is empty"
ports=()
next=7001
for p in "${want[@]}"; do
	if port_busy "$p" || [[ " ${ports[*]} " == *" $p "* ]] || [ "$p" = "$lport" ] || [ "$p" = "$aport" ]; then
		[ -n "$ports_given" ] && die "port $p (REDIS_PORTS) is in use"
		[ "$p" -ge "$next" ] && next=$p
		while port_busy "$next" || [[ " ${ports[*]} " == *" $next "* ]] || [ "$next" = "$lport" ] || [ "$next" = "$aport" ]; do
			next=$((next + 1))
		done
		log "port $p is in use, using $next instead"
		p=$next
	fi
	ports+=("$p")
done

keep_dir=1
if [ -z "${RUN_DIR:-}" ]; then
	RUN_DIR="$(mktemp -d -t jupiter-run.XXXXXX)"
	keep_dir=0
fi
mkdir -p "$RUN_DIR"

REDIS_PIDS=()
JUPITER_PID=""
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$JUPITER_PID" ] && alive "$JUPITER_PID"; then
		log "stopping jupiter (pid $JUPITER_PID)"
		stop_pids 25 "$JUPITER_PID"
	fi
	if [ ${#REDIS_PIDS[@]} -gt 0 ]; then
		log "stopping redis-servers (pids ${REDIS_PIDS[*]})"
		stop_pids 10 "${REDIS_PIDS[@]}"
	fi
	if [ "$keep_dir" = 0 ]; then
		rm -rf "$RUN_DIR"
	else
		log "logs kept in $RUN_DIR"
	fi
	exit "$rc"
}
trap cleanup EXIT
# A signal only interrupts `wait`; the EXIT trap then stops everything.
trap 'exit 130' INT
trap 'exit 143' TERM

backends=()
for p in "${ports[@]}"; do
	start_redis "$RUN_DIR/redis-$p" "$p"
	REDIS_PIDS+=("$STARTED_PID")
	wait_ping 127.0.0.1 "$p" || die "redis-server on $p did not answer (log $RUN_DIR/redis-$p/redis.log)"
	backends+=("127.0.0.1:$p")
done
BACKENDS=$(IFS=,; echo "${backends[*]}")
log "redis-servers: $BACKENDS (pids ${REDIS_PIDS[*]}, dir $RUN_DIR)"

"$BIN" serve --listen "$LISTEN" --admin-listen "$ADMIN_LISTEN" --backends "$BACKENDS" "$@" &
JUPITER_PID=$!

host=127.0.0.1
[ "${LISTEN%:*}" != "" ] && [ "${LISTEN%:*}" != "0.0.0.0" ] && host=${LISTEN%:*}
if ! wait_ping "$host" "$lport" 100; then
	alive "$JUPITER_PID" || { wait "$JUPITER_PID" || rc=$?; die "jupiter exited (status ${rc:-0}) before answering PING"; }
	die "jupiter does not answer PING on $host:$lport"
fi
cat >&2 <<EOF

  jupiter $("$BIN" version 2>/dev/null | awk '{print $2}') (pid $JUPITER_PID) is serving on $LISTEN, backends $BACKENDS
  connect:  redis-cli -h $host -p $lport          (e.g. redis-cli -p $lport set k v; redis-cli -p $lport get k)
  status:   redis-cli -h $host -p $lport jupiter status
EOF
[ -n "$aport" ] && cat >&2 <<EOF
  admin:    curl http://127.0.0.1:$aport/v1/status   (/healthz /readyz /metrics)
EOF
cat >&2 <<EOF
  stop:     Ctrl-C (stops jupiter and the redis-servers started here)

EOF

# Foreground: wait for jupiter; Ctrl-C/SIGTERM interrupt the wait and the EXIT
# trap drains jupiter (SIGTERM) and stops the redis-servers.
rc=0
wait "$JUPITER_PID" || rc=$?
JUPITER_PID=""
log "jupiter exited with status $rc"
exit "$rc"
