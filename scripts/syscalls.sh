#!/usr/bin/env bash
# syscalls.sh - `make bench-syscalls`: where a proxy's CPU per command goes,
# jupiter next to predixy (and twemproxy when installed), in one run.
#
# Starts 3 throw-away redis-servers, jupiter (GOMAXPROCS=1), predixy (1
# worker thread, ../shared/bench/predixy, measurement only) and twemproxy
# on free loopback ports, then for each test and repetition runs
# redis-benchmark against every proxy in turn (alternating, so drift in the
# machine's load hits them alike) and records, per proxy process:
#   - syscalls per command: perf stat -e raw_syscalls:sys_enter -p PID
#     (needs perf and tracepoint access, e.g. root), else strace -c -f;
#   - user and system CPU per command (/proc/PID/stat utime/stime deltas).
# Prints a Markdown table of the medians (also $WORK/syscalls.md).
#
# Environment (defaults): N=200000 C=50 R=100000 D=64 REPS=3
#   TESTS="set:1 get:1 set:16 get:16" WORK=/tmp/jupiter-syscalls
#   PREDIXY_BIN=../shared/bench/predixy ("" leaves predixy out) JUPITER_BIN=
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
exec </dev/null

N=${N:-200000}
C=${C:-50}
R=${R:-100000}
D=${D:-64}
REPS=${REPS:-3}
TESTS=${TESTS:-"set:1 get:1 set:16 get:16"}
WORK=${WORK:-/tmp/jupiter-syscalls}
if [ -z "${PREDIXY_BIN+x}" ] && [ -x "$ROOT/../shared/bench/predixy" ]; then
	PREDIXY_BIN=$ROOT/../shared/bench/predixy
fi
PREDIXY_BIN=${PREDIXY_BIN:-}

"$ROOT/scripts/deps.sh" --bench
command -v redis-benchmark >/dev/null || die "redis-benchmark is not installed"
BIN="$(jupiter_bin)"
mkdir -p "$WORK"
rm -f "$WORK"/*.raw

COUNTER=perf
if ! command -v perf >/dev/null 2>&1 ||
	! perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
	command -v strace >/dev/null 2>&1 || die "neither perf (with tracepoint access) nor strace is available"
	COUNTER=strace
fi

stop_on_exit 10
start_backends "$WORK" 27101
backends=("${BACKEND_PORTS[@]}")
BACKENDS=$(printf '127.0.0.1:%s,' "${backends[@]}")
BACKENDS=${BACKENDS%,}

NAMES=() PORTS=() PPIDS=()
add_target() { NAMES+=("$1"); PORTS+=("$2"); PPIDS+=("$3"); PIDS+=("$3"); }

jport=$(free_port 26400) || die "no free port"
GOMAXPROCS=1 "$BIN" serve --listen "127.0.0.1:$jport" --admin-listen "" --backends "$BACKENDS" \
	--log-level warn >"$WORK/jupiter.log" 2>&1 &
add_target jupiter "$jport" $!
wait_ping 127.0.0.1 "$jport" || die "jupiter did not answer (log $WORK/jupiter.log)"

if [ -n "$PREDIXY_BIN" ]; then
	[ -x "$PREDIXY_BIN" ] || die "PREDIXY_BIN=$PREDIXY_BIN is not executable"
	pport=$(free_port 26500) || die "no free port"
	{
		printf 'Name syscalls\nBind 127.0.0.1:%s\nWorkerThreads 1\nClientTimeout 300\n' "$pport"
		printf 'Log %s/predixy.log\nLogVerbSample 0\nLogDebugSample 0\nLogInfoSample 0\n' "$WORK"
		printf 'LogNoticeSample 0\nLogWarnSample 1\nLogErrorSample 1\n'
		printf 'Authority {\n    Auth {\n        Mode write\n    }\n}\n'
		printf 'StandaloneServerPool {\n    Databases 1\n    Hash crc16\n    Distribution modula\n'
		printf '    MasterReadPriority 100\n    RefreshMethod fixed\n    ServerTimeout 1\n'
		printf '    ServerFailureLimit 10\n    ServerRetryTimeout 1\n    KeepAlive 120\n'
		for b in "${backends[@]}"; do printf '    Group g%s {\n        + 127.0.0.1:%s\n    }\n' "$b" "$b"; done
		printf '}\n'
	} >"$WORK/predixy.conf"
	"$PREDIXY_BIN" "$WORK/predixy.conf" >"$WORK/predixy.out" 2>&1 &
	add_target predixy "$pport" $!
	wait_ping 127.0.0.1 "$pport" || die "predixy did not answer (log $WORK/predixy.out)"
fi

if command -v nutcracker >/dev/null 2>&1; then
	tport=$(free_port 26600) || die "no free port"
	sport=$(free_port $((tport + 1))) || die "no free port"
	{
		printf 'pool:\n  listen: 127.0.0.1:%s\n  hash: fnv1a_64\n  distribution: ketama\n' "$tport"
		printf '  redis: true\n  server_retry_timeout: 2000\n  server_failure_limit: 1\n  servers:\n'
		for b in "${backends[@]}"; do printf '   - 127.0.0.1:%s:1\n' "$b"; done
	} >"$WORK/twemproxy.yml"
	nutcracker -c "$WORK/twemproxy.yml" -s "$sport" -o "$WORK/twemproxy.log" &
	add_target twemproxy "$tport" $!
	wait_ping 127.0.0.1 "$tport" || die "twemproxy did not answer (log $WORK/twemproxy.log)"
fi

TICK=$(getconf CLK_TCK)
cpu() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12, $13}'; } # utime stime (ticks)

# measure NAME PORT PID TEST PIPELINE: one redis-benchmark run, one line of
# "rps syscalls_per_cmd user_us sys_us" appended to $WORK/NAME.TEST.P.raw.
measure() {
	local name=$1 port=$2 pid=$3 test=$4 pipe=$5 out u0 s0 u1 s1 rps calls
	out="$WORK/$name.$test.$pipe"
	read -r u0 s0 < <(cpu "$pid")
	if [ "$COUNTER" = perf ]; then
		perf stat -x, -e raw_syscalls:sys_enter -p "$pid" -o "$out.perf" -- \
			redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" -n "$N" -c "$C" -r "$R" -d "$D" -P "$pipe" --csv >"$out.csv" 2>/dev/null
		calls=$(awk -F, '/raw_syscalls/ {print $1}' "$out.perf")
	else
		strace -c -f -p "$pid" -o "$out.strace" 2>/dev/null &
		local st=$!
		sleep 0.5
		redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" -n "$N" -c "$C" -r "$R" -d "$D" -P "$pipe" --csv >"$out.csv" 2>/dev/null
		kill -INT "$st" 2>/dev/null || true
		wait "$st" 2>/dev/null || true
		calls=$(awk '/total$/ {print $3}' "$out.strace")
	fi
	read -r u1 s1 < <(cpu "$pid")
	rps=$(awk -F, 'NR==2 {gsub(/"/,"",$2); print $2}' "$out.csv")
	if [ -z "$rps" ] || [ -z "$calls" ]; then die "no result for $name $test P$pipe (see $out.*)"; fi
	awk -v r="$rps" -v c="$calls" -v n="$N" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v t="$TICK" \
		'BEGIN {printf "%s %.2f %.2f %.2f\n", r, c/n, u*1e6/t/n, s*1e6/t/n}' >>"$out.raw"
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }

log "counting syscalls with $COUNTER; targets: ${NAMES[*]}; N=$N C=$C REPS=$REPS"
for t in $TESTS; do
	test=${t%%:*} pipe=${t##*:}
	for rep in $(seq "$REPS"); do
		for i in "${!NAMES[@]}"; do
			measure "${NAMES[$i]}" "${PORTS[$i]}" "${PPIDS[$i]}" "$test" "$pipe"
		done
		log "$test P$pipe rep $rep done"
	done
done

{
	echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores; N=$N C=$C D=$D, median of $REPS, syscalls by $COUNTER"
	echo
	echo "| test | proxy | req/s | syscalls/cmd | user µs/cmd | sys µs/cmd | CPU µs/cmd | CPU vs ${NAMES[1]:-${NAMES[0]}} |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|"
	for t in $TESTS; do
		test=${t%%:*} pipe=${t##*:}
		ref=""
		[ ${#NAMES[@]} -gt 1 ] && ref=$(awk '{print $3+$4}' "$WORK/${NAMES[1]}.$test.$pipe.raw" | median)
		for name in "${NAMES[@]}"; do
			f="$WORK/$name.$test.$pipe.raw"
			rps=$(awk '{print $1}' "$f" | median)
			sc=$(awk '{print $2}' "$f" | median)
			us=$(awk '{print $3}' "$f" | median)
			sy=$(awk '{print $4}' "$f" | median)
			tot=$(awk '{printf "%.2f\n", $3+$4}' "$f" | median)
			ratio=$(awk -v a="$tot" -v b="$ref" 'BEGIN {if (b > 0) printf "%.2f", a/b; else print "-"}')
			echo "| ${test^^} P$pipe | $name | $rps | $sc | $us | $sy | $tot | $ratio |"
		done
	done
} | tee "$WORK/syscalls.md"
