# shellcheck shell=bash
# lib.sh - helpers shared by the scripts in this folder (sourced, not run).
#
# Every process a script starts is stopped by the PID it recorded, never by
# name, so nothing else on the machine (another developer's redis, a system
# redis on 6379) is touched.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT="$(basename "$0" .sh)"

log() { printf '[%s] %s\n' "$SCRIPT" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# is_ci: true when CI is set to anything but "", 0 or false (same rule as
# test/testenv and test/emulator).
is_ci() {
	local v
	v="$(printf '%s' "${CI:-}" | tr '[:upper:]' '[:lower:]')"
	[ -n "$v" ] && [ "$v" != 0 ] && [ "$v" != false ]
}

# port_busy PORT: something listens on PORT (any local address).
port_busy() {
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -ltnH "sport = :$1" 2>/dev/null)" ]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}

# free_port [START]: first port >= START (default: random in 20000-29999)
# that nobody listens on.
free_port() {
	local p=${1:-$((20000 + RANDOM % 10000))}
	for _ in $(seq 200); do
		port_busy "$p" || { echo "$p"; return 0; }
		p=$((p + 1))
	done
	return 1
}

# wait_ping HOST PORT [TRIES]: wait until redis-cli PING answers PONG (0.1 s steps).
wait_ping() {
	for _ in $(seq "${3:-100}"); do
		[ "$(redis-cli -h "$1" -p "$2" ping 2>/dev/null)" = PONG ] && return 0
		sleep 0.1
	done
	return 1
}

# alive PID: the process exists and is not a zombie.
alive() {
	local st
	[ -r "/proc/$1/stat" ] || return 1
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$st" ] && [ "$st" != Z ]
}

# stop_pids SECONDS PID...: SIGTERM the PIDs, wait up to SECONDS for them to
# exit, then SIGKILL what is left. Only PIDs this script started are passed.
stop_pids() {
	local grace=$1 pid left
	shift
	[ $# -gt 0 ] || return 0
	for pid in "$@"; do
		if alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
	done
	for _ in $(seq $((grace * 10))); do
		left=0
		for pid in "$@"; do alive "$pid" && left=1; done
		[ $left = 0 ] && break
		sleep 0.1
	done
	for pid in "$@"; do
		if alive "$pid"; then
			log "pid $pid ignored SIGTERM for ${grace}s, sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

# start_redis DIR PORT: start a throw-away redis-server (no persistence) in the
# foreground of a background job of this shell, so $! is the redis-server PID
# itself (call it directly, not in $(...)). Sets STARTED_PID.
start_redis() {
	local dir=$1 port=$2
	mkdir -p "$dir"
	redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
		--protected-mode no --daemonize no --dir "$dir" --logfile "$dir/redis.log" \
		</dev/null >/dev/null 2>&1 &
	# shellcheck disable=SC2034 # read by the caller
	STARTED_PID=$!
}

# jupiter_bin: builds bin/jupiter with `make build` (the same flags as the
# Dockerfile and CI) and prints its path; JUPITER_BIN overrides.
jupiter_bin() {
	if [ -n "${JUPITER_BIN:-}" ]; then
		[ -x "$JUPITER_BIN" ] || die "JUPITER_BIN=$JUPITER_BIN is not executable"
		echo "$JUPITER_BIN"
		return 0
	fi
	make --no-print-directory -s -C "$ROOT" build >&2 || die "make build failed"
	echo "$ROOT/bin/jupiter"
}

# stop_on_exit GRACE: when the script exits (or gets INT/TERM), stop every
# PID the script appended to PIDS (stop_pids GRACE), then exit with the
# script's status.
PIDS=()
stop_on_exit() {
	STOP_GRACE=$1
	trap _stop_on_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}
_stop_on_exit() {
	local rc=$?
	trap - EXIT INT TERM
	stop_pids "$STOP_GRACE" "${PIDS[@]}"
	exit "$rc"
}

# start_backends DIR FIRST_PORT: three throw-away redis-servers on the first
# free ports from FIRST_PORT (data under DIR/redis-PORT), each answering
# PING before it returns; their ports go to BACKEND_PORTS, their PIDs to PIDS.
start_backends() {
	local dir=$1 p=$2
	BACKEND_PORTS=()
	for _ in 1 2 3; do
		while port_busy "$p"; do p=$((p + 1)); done
		start_redis "$dir/redis-$p" "$p"
		PIDS+=("$STARTED_PID")
		wait_ping 127.0.0.1 "$p" || die "redis-server on $p did not answer (log $dir/redis-$p/redis.log)"
		BACKEND_PORTS+=("$p")
		p=$((p + 1))
	done
}
