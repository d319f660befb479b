#!/usr/bin/env bash
# hashbench.sh: what hash= placement records cost on the write path.
#
# Starts 3 throw-away redis-servers and one jupiter per given binary
# (standalone, GOMAXPROCS=1, the same 3 backends), then runs redis-benchmark
# against every jupiter, alternating the binaries inside each repetition,
# for SET and GET with and without a trailing hash= argument, at pipeline 1
# and 16. A SET with hash= writes a placement record in the same MULTI
# (the key's own slot differs from the hash key's: both are random); a GET
# with hash= is only forwarded. Prints the median req/s per row and binary.
#
# Usage: scripts/hashbench.sh NAME=PATH/TO/jupiter [NAME=PATH ...]
# Environment: N=200000 C=50 R=100000 REPS=3 PORT0=7301
set -euo pipefail

N=${N:-200000}
C=${C:-50}
R=${R:-100000}
REPS=${REPS:-3}
PORT0=${PORT0:-7301}
WORK=$(mktemp -d /tmp/hashbench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

if [ $# -eq 0 ]; then
	echo "usage: $0 NAME=PATH/TO/jupiter ..." >&2
	exit 2
fi
for tool in redis-server redis-benchmark redis-cli; do
	command -v "$tool" >/dev/null || { echo "$tool missing (scripts/deps.sh installs it)" >&2; exit 1; }
done

backends=()
for i in 0 1 2; do
	port=$((PORT0 + i))
	redis-server --port "$port" --save "" --appendonly no --daemonize no --logfile "$WORK/redis$i.log" &
	pids+=($!)
	backends+=("127.0.0.1:$port")
done
names=()
addrs=()
i=0
for spec in "$@"; do
	name=${spec%%=*}
	bin=${spec#*=}
	port=$((PORT0 + 10 + i))
	GOMAXPROCS=1 "$bin" serve --listen "127.0.0.1:$port" --backends "$(IFS=,; echo "${backends[*]}")" \
		--admin-listen "127.0.0.1:$((port + 100))" >"$WORK/$name.log" 2>&1 &
	pids+=($!)
	names+=("$name")
	addrs+=("$port")
	i=$((i + 1))
done
for port in "${addrs[@]}" $PORT0 $((PORT0 + 1)) $((PORT0 + 2)); do
	for _ in $(seq 1 100); do
		redis-cli -p "$port" PING >/dev/null 2>&1 && break
		sleep 0.1
	done
	redis-cli -p "$port" PING >/dev/null || { echo "port $port not answering" >&2; exit 1; }
done

rows=(
	"SET|SET k:__rand_int__ 0123456789abcdef"
	"SET hash=|SET k:__rand_int__ 0123456789abcdef hash=f:__rand_int__"
	"GET|GET k:__rand_int__"
	"GET hash=|GET k:__rand_int__ hash=f:__rand_int__"
)
run() { # port pipeline command...
	local port=$1 p=$2
	shift 2
	redis-benchmark -p "$port" -n "$N" -c "$C" -r "$R" -P "$p" -q --csv "$@" 2>/dev/null |
		tail -1 | cut -d, -f2 | tr -d '"'
}
declare -A res
for rep in $(seq 1 "$REPS"); do
	for p in 1 16; do
		for row in "${rows[@]}"; do
			label=${row%%|*}
			read -r -a cmd <<<"${row#*|}"
			order=("${!names[@]}")
			if [ $((rep % 2)) -eq 0 ]; then
				mapfile -t order < <(printf '%s\n' "${order[@]}" | tac)
			fi
			for j in "${order[@]}"; do
				v=$(run "${addrs[$j]}" "$p" "${cmd[@]}")
				res["$label P$p|${names[$j]}"]+="$v "
			done
		done
	done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '| test |'
for n in "${names[@]}"; do printf ' %s |' "$n"; done
echo
printf '|---|'
for _ in "${names[@]}"; do printf -- '---:|'; done
echo
for p in 1 16; do
	for row in "${rows[@]}"; do
		label="${row%%|*} P$p"
		printf '| %s |' "$label"
		for n in "${names[@]}"; do
			printf ' %s |' "$(echo "${res["$label|$n"]}" | median)"
		done
		echo
	done
done
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
