#!/usr/bin/env bash
# Runs a local 3-pod jupiter cluster on the Cloud Spanner emulator, with
# three redis-server nodes, in one command:
#
#   test/emulator/cluster-up.sh          # foreground; Ctrl-C stops everything
#   test/emulator/cluster-up.sh -d       # detached; stop with: cluster-up.sh down
#   test/emulator/cluster-up.sh down
#
# Then, for example:
#
#   redis-cli -p 6381 set k v; redis-cli -p 6382 get k
#   jupiter ctl --addr 127.0.0.1:6383 status
#   redis-server --port 7004 --save '' --daemonize yes
#   jupiter ctl --addr 127.0.0.1:6382 add 127.0.0.1:7004
#   curl -s localhost:9091/v1/nodes
#
# Pod i (1..3) listens for RESP on 638i, HTTP admin on 909i, hedge on
# 127.0.0.1:$((HEDGE_BASE+2i)) and +1. Redis nodes use REDIS_PORTS; the first
# two seed the ring. Everything is overridable through the environment:
# RESP_BASE (6380), ADMIN_BASE (9090), HEDGE_BASE (7940), REDIS_PORTS
# ("7001 7002 7003"), PORT (emulator gRPC, 9010), STATE (state directory).
# Short lease and poll settings make a killed leader replaceable in seconds.
# Processes are stopped by their recorded pids only.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
state="${STATE:-${TMPDIR:-/tmp}/jupiter-cluster-up}"
resp_base="${RESP_BASE:-6380}"
admin_base="${ADMIN_BASE:-9090}"
hedge_base="${HEDGE_BASE:-7940}"
redis_ports=(${REDIS_PORTS:-7001 7002 7003})
db="projects/jupiter-local/instances/local/databases/jupiter"
export EMULATOR_STATE_DIR="$state/emulator"

down() {
	for f in "$state"/*.pid; do
		[ -f "$f" ] || continue
		pid="$(cat "$f")"
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
		rm -f "$f"
	done
	"$here/stop.sh"
}

if [ "${1:-}" = "down" ]; then
	down
	echo "cluster-up: stopped"
	exit 0
fi
detach=0
[ "${1:-}" = "-d" ] && detach=1

command -v redis-server >/dev/null || { echo "cluster-up: redis-server not on PATH" >&2; exit 1; }
mkdir -p "$state"
if ls "$state"/*.pid >/dev/null 2>&1; then
	echo "cluster-up: already running (state in $state); run: $0 down" >&2
	exit 1
fi

echo "cluster-up: building jupiter"
(cd "$root" && go build -o "$state/jupiter" ./cmd/jupiter)
jupiter="$state/jupiter"

eval "$("$here/start.sh")" # exports SPANNER_EMULATOR_HOST
echo "cluster-up: emulator at $SPANNER_EMULATOR_HOST"
"$jupiter" ddl --apply --spanner-db "$db"

seeds=""
for i in "${!redis_ports[@]}"; do
	p="${redis_ports[$i]}"
	redis-server --port "$p" --bind 127.0.0.1 --save "" --appendonly no \
		--logfile "$state/redis-$p.log" >/dev/null 2>&1 &
	echo $! >"$state/redis-$p.pid"
	[ "$i" -lt 2 ] && seeds="${seeds:+$seeds,}127.0.0.1:$p"
done

if [ $detach = 0 ]; then
	trap 'echo; echo "cluster-up: stopping"; down; exit 0' INT TERM
fi
for i in 1 2 3; do
	"$jupiter" serve \
		--listen "127.0.0.1:$((resp_base + i))" \
		--admin-listen "127.0.0.1:$((admin_base + i))" \
		--spanner-db "$db" \
		--hedge-addr "127.0.0.1:$((hedge_base + 2 * i))" \
		--backends "$seeds" \
		--lock-lease 3s --member-sync-interval 2s --poll-interval 500ms \
		--log-format text >"$state/pod$i.log" 2>&1 &
	echo $! >"$state/pod$i.pid"
done

for _ in $(seq 1 100); do
	ok=0
	for i in 1 2 3; do
		curl -fsS "127.0.0.1:$((admin_base + i))/readyz" >/dev/null 2>&1 && ok=$((ok + 1))
	done
	[ $ok = 3 ] && break
	sleep 0.2
done
"$jupiter" ctl --addr "127.0.0.1:$((resp_base + 1))" status || true
cat <<EOF

cluster-up: 3 pods ready
  RESP     127.0.0.1:$((resp_base + 1)) 127.0.0.1:$((resp_base + 2)) 127.0.0.1:$((resp_base + 3))
  admin    http://127.0.0.1:$((admin_base + 1))/v1/status (and /v1/nodes)
  redis    ${redis_ports[*]} (ring seeded with $seeds)
  jupiter  $jupiter  (e.g. $jupiter ctl --addr 127.0.0.1:$((resp_base + 2)) nodes)
  logs     $state/pod{1,2,3}.log
EOF
if [ $detach = 1 ]; then
	echo "  stop     $0 down"
	exit 0
fi
echo "  Ctrl-C stops everything"
wait
