#!/usr/bin/env bash
# bench.sh - `make bench`: the three benchmarks, one after the other.
#
# 1. anchors: builds bin/jupiter, starts it on a free loopback port pointed at
#    127.0.0.1:7001,7002,7003, then runs ../shared/bench/anchors.sh
#    jupiter=127.0.0.1:PORT. anchors.sh starts those 3 redis-servers (and
#    twemproxy) itself, after jupiter is up: jupiter connects to them when
#    they appear. It prints req/s (and the ratio to a direct redis node),
#    latency and CPU per request for direct / twemproxy / jupiter.
# 2. Go micro-benchmarks: go test -run XXX -bench . -benchmem ./internal/...
# 3. membench (scripts/membench.sh): RSS per idle client connection.
#
# Reports are printed and saved in $OUT (default /tmp/jupiter-bench):
# anchors.md, micro.txt, membench.md, jupiter.log.
#
# Environment (defaults):
#   ANCHORS=../shared/bench/anchors.sh (relative to the repo)
#   ANCHORS_PORTS="7001 7002 7003 22121 22222"  the backend ports anchors.sh
#                            starts (jupiter's --backends) and twemproxy's ports;
#                            only change it together with a modified anchors.sh
#   OUT=/tmp/jupiter-bench   BENCHTIME=1s (go test -benchtime)
#   SKIP_ANCHORS=0 SKIP_MICRO=0 SKIP_MEMBENCH=0
#   anchors.sh's own: N=200000 C=50 R=100000 D=64 REPS=3 TESTS="getset:1 getset:16 mset:1 mset:16"
#   membench's own: CONNS=10000
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
exec </dev/null

ANCHORS=${ANCHORS:-$ROOT/../shared/bench/anchors.sh}
OUT=${OUT:-/tmp/jupiter-bench}
BENCHTIME=${BENCHTIME:-1s}
mkdir -p "$OUT"

"$ROOT/scripts/deps.sh" --bench
BIN="$(jupiter_bin)"
export JUPITER_BIN="$BIN"
failed=()

JPID=""
JPID2=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[ -n "$JPID" ] && stop_pids 25 "$JPID"
	[ -n "$JPID2" ] && stop_pids 25 "$JPID2"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- 1. anchors
if [ "${SKIP_ANCHORS:-0}" != 1 ]; then
	[ -f "$ANCHORS" ] || die "anchors script not found: $ANCHORS
  (make bench expects the shared/ checkout beside the repo, i.e. ../shared/bench/anchors.sh; or set ANCHORS=path)"
	read -r -a aports <<<"${ANCHORS_PORTS:-7001 7002 7003 22121 22222}"
	for p in "${aports[@]}"; do
		port_busy "$p" && die "port $p is in use (another anchors.sh run, or someone's redis?): anchors.sh needs ${aports[*]}"
	done
	# Two jupiters in front of the same backends: GOMAXPROCS=1 is jupiter as
	# deployed (deploy/ gives the pod a 1-CPU limit, and Go sizes GOMAXPROCS
	# from it) and the same single core twemproxy uses; "jupiter-2p" is the
	# Go default on this 2-core machine, where it competes with
	# redis-benchmark and the backends for the cores.
	jport=$(free_port 16379) || die "no free port"
	aport=$(free_port $((jport + 1))) || die "no free port"
	jport2=$(free_port $((aport + 1))) || die "no free port"
	aport2=$(free_port $((jport2 + 1))) || die "no free port"
	backends="127.0.0.1:${aports[0]},127.0.0.1:${aports[1]},127.0.0.1:${aports[2]}"
	GOMAXPROCS=1 "$BIN" serve --listen "127.0.0.1:$jport" --admin-listen "127.0.0.1:$aport" \
		--backends "$backends" >"$OUT/jupiter.log" 2>&1 &
	JPID=$!
	"$BIN" serve --listen "127.0.0.1:$jport2" --admin-listen "127.0.0.1:$aport2" \
		--backends "$backends" >"$OUT/jupiter-2p.log" 2>&1 &
	JPID2=$!
	wait_ping 127.0.0.1 "$jport" || die "jupiter did not answer PING on $jport (log $OUT/jupiter.log)"
	wait_ping 127.0.0.1 "$jport2" || die "jupiter did not answer PING on $jport2 (log $OUT/jupiter-2p.log)"
	log "jupiter $("$BIN" version | awk '{print $2}') pids $JPID (GOMAXPROCS=1) $JPID2 (default) on :$jport :$jport2; running $ANCHORS"
	if bash "$ANCHORS" "jupiter=127.0.0.1:$jport" "jupiter-2p=127.0.0.1:$jport2" | tee "$OUT/anchors.md"; then
		# every anchors cell must have a jupiter number: a dead proxy is a failure, not a gap
		grep -q ' n/a |' "$OUT/anchors.md" && { log "anchors: some jupiter cells are n/a"; failed+=(anchors); }
	else
		failed+=(anchors)
	fi
	alive "$JPID2" || { log "jupiter-2p died during the anchors run (log $OUT/jupiter-2p.log)"; failed+=(jupiter-died); }
	stop_pids 25 "$JPID2"
	JPID2=""
	alive "$JPID" || { log "jupiter died during the anchors run (log $OUT/jupiter.log)"; failed+=(jupiter-died); }
	stop_pids 25 "$JPID"
	JPID=""
fi

# ---------------------------------------------------------------- 2. micro
if [ "${SKIP_MICRO:-0}" != 1 ]; then
	log "go test -run XXX -bench . -benchmem -benchtime $BENCHTIME ./internal/..."
	go test -run XXX -bench . -benchmem -benchtime "$BENCHTIME" ./internal/... 2>&1 | tee "$OUT/micro.txt" || failed+=(micro)
fi

# ---------------------------------------------------------------- 3. membench
if [ "${SKIP_MEMBENCH:-0}" != 1 ]; then
	WORK="$OUT/membench" "$ROOT/scripts/membench.sh" | tee "$OUT/membench.md" || failed+=(membench)
fi

log "reports in $OUT (anchors.md micro.txt membench.md)"
[ ${#failed[@]} -eq 0 ] || die "failed: ${failed[*]}"
