#!/usr/bin/env bash
# dashboard-render.sh - the run behind docs/dashboard.png: a real jupiter
# cluster under redis-benchmark load, with a node added mid-run, recorded
# and drawn as deploy/grafana/jupiter-dashboard.json would show it.
#
#   scripts/dashboard-render.sh            # writes docs/dashboard.png
#   OUT=/tmp/d.png scripts/dashboard-render.sh
#
# 1. test/emulator/cluster-up.sh -d: the Spanner emulator, 3 redis-servers
#    (the first two seed the ring) and 3 jupiter pods, on free ports, with
#    flags from JUPITER_* variables: capacity figures every second, one
#    command in 10 sampled for hot keys, a 5 ms slow log, 64 KiB big keys,
#    the migrator held to 2000 keys/s per source so the rebalance is visible;
# 2. test/dashrender record scrapes every pod's /metrics every second;
# 3. load: a preload of ~63k keys (100k SETs of keys drawn from 100k), then
#    redis-benchmark GETs on random keys through pods 1 and 2 and SETs
#    through pod 1 (keys drawn from 150k, so many GETs miss at first),
#    one key hammered through pod 3, a 100 KiB SET every half second, an
#    INCR on a string (an error) every half second;
# 4. at LOAD_BEFORE_ADD seconds: jupiter ctl add of the third redis-server,
#    a staged rebalance; the run ends TAIL seconds after it is stable again;
# 5. test/dashrender render draws the dashboard from the recording.
#
# Everything started is stopped by PID (cluster-up.sh down for the cluster).
# Needs redis-server, redis-benchmark, redis-cli and the emulator (see
# test/emulator/start.sh).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exec </dev/null

OUT=${OUT:-$ROOT/docs/dashboard.png}
LOAD_BEFORE_ADD=${LOAD_BEFORE_ADD:-30}
TAIL=${TAIL:-20}
for p in redis-server redis-benchmark redis-cli; do
	command -v "$p" >/dev/null || die "$p not on PATH (scripts/deps.sh --run)"
done

work="$(mktemp -d /tmp/jupiter-dash.XXXXXX)"
# 53 consecutive free ports: pods, admin, hedge (+1 each), redis, emulator.
base=""
for _ in $(seq 20); do
	b=$((20000 + RANDOM % 12000)) # below the ephemeral range (32768-)
	for p in $(seq "$b" $((b + 52))); do
		port_busy "$p" && continue 2
	done
	base=$b
	break
done
[ -n "$base" ] || die "found no 53 consecutive free ports"
export STATE="$work/cluster" RESP_BASE=$base ADMIN_BASE=$((base + 10)) HEDGE_BASE=$((base + 20))
export REDIS_PORTS="$((base + 40)) $((base + 41)) $((base + 42))" PORT=$((base + 50))
export JUPITER_CAPACITY_INTERVAL=1s JUPITER_HOTKEYS_SAMPLE=10 JUPITER_SLOWLOG_SLOWER_THAN=5000 \
	JUPITER_BIGKEYS_THRESHOLD=65536 JUPITER_MIGRATE_KEYS_PER_SEC=2000
read -r -a redis <<<"$REDIS_PORTS"
pods=("$((base + 1))" "$((base + 2))" "$((base + 3))")

pids=()
cleanup() {
	if [ ${#pids[@]} -gt 0 ]; then stop_pids 5 "${pids[@]}"; fi
	"$ROOT/test/emulator/cluster-up.sh" down >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

log "building test/dashrender"
go build -o "$work/dashrender" "$ROOT/test/dashrender"
log "starting the cluster (state in $STATE)"
"$ROOT/test/emulator/cluster-up.sh" -d >"$work/cluster-up.log" 2>&1 || { cat "$work/cluster-up.log" >&2; die "cluster-up failed"; }
jupiter="$STATE/jupiter"
ctl() { "$jupiter" ctl --addr "127.0.0.1:${pods[0]}" "$@"; }

"$work/dashrender" record -interval 1s -out "$work/run.jsonl" \
	-targets "pod1=127.0.0.1:$((base + 11)),pod2=127.0.0.1:$((base + 12)),pod3=127.0.0.1:$((base + 13))" &
pids+=($!)

log "preload"
redis-benchmark -h 127.0.0.1 -p "${pods[0]}" -t set -n 100000 -r 100000 -d 64 -c 8 -P 16 -q >/dev/null
redis-cli -p "${pods[2]}" set user:42:session s >/dev/null
log "load"
for p in "${pods[0]}" "${pods[1]}"; do
	redis-benchmark -h 127.0.0.1 -p "$p" -t get -n 100000000 -r 150000 -c 4 -q -l >/dev/null 2>&1 &
	pids+=($!)
done
redis-benchmark -h 127.0.0.1 -p "${pods[0]}" -t set -n 100000000 -r 150000 -d 64 -c 2 -q -l >/dev/null 2>&1 &
pids+=($!)
redis-benchmark -h 127.0.0.1 -p "${pods[2]}" -n 100000000 -c 2 -q -l get user:42:session >/dev/null 2>&1 &
pids+=($!)
head -c 102400 /dev/zero | tr '\0' x >"$work/big"
(
	while :; do
		redis-cli -p "${pods[2]}" -x set blob:report <"$work/big" >/dev/null
		redis-cli -p "${pods[1]}" incr blob:report >/dev/null 2>&1
		sleep 0.5
	done
) &
pids+=($!)

sleep "$LOAD_BEFORE_ADD"
log "adding 127.0.0.1:${redis[2]}"
ctl add "127.0.0.1:${redis[2]}"
ctl status --watch --interval 1s --timeout 5m >/dev/null || log "rebalance did not finish in 5m"
sleep "$TAIL"

stop_pids 5 "${pids[0]}" # the recorder first: the run ends with the load still on
pids=("${pids[@]:1}")
ctl nodes >&2 || true
"$work/dashrender" render -dashboard "$ROOT/deploy/grafana/jupiter-dashboard.json" -in "$work/run.jsonl" -out "$OUT" \
	-title "3 pods, 2 -> 3 redis-servers: redis-benchmark GET/SET through pods 1-2, one hot key through pod 3, JUPITER ADD at +${LOAD_BEFORE_ADD}s"
log "wrote $OUT"
