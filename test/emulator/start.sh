#!/usr/bin/env bash
# Starts the Cloud Spanner emulator in the background and prints the
# environment to use it:
#
#   eval "$(test/emulator/start.sh)"      # exports SPANNER_EMULATOR_HOST
#   go test ./internal/cluster/ ...
#   test/emulator/stop.sh
#
# PORT (default 9010) picks the gRPC port. If SPANNER_EMULATOR_HOST is
# already set and answers, nothing is started. The emulator binary comes from
# the gcloud SDK ("gcloud components install cloud-spanner-emulator", or the
# google-cloud-cli-spanner-emulator Debian package); EMULATOR_BIN overrides.
# Instances and databases are created by the tests themselves
# (cluster.ApplyDDL creates both on the emulator).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="${EMULATOR_STATE_DIR:-${TMPDIR:-/tmp}/jupiter-spanner-emulator}"
port="${PORT:-9010}"

answers() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

if [ -n "${SPANNER_EMULATOR_HOST:-}" ] && answers "$SPANNER_EMULATOR_HOST"; then
	echo "export SPANNER_EMULATOR_HOST=$SPANNER_EMULATOR_HOST"
	exit 0
fi

bin="${EMULATOR_BIN:-}"
if [ -z "$bin" ]; then
	root=""
	command -v gcloud >/dev/null && root="$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null || true)"
	for c in "$root/bin/cloud_spanner_emulator/emulator_main" \
		/usr/lib/google-cloud-sdk/bin/cloud_spanner_emulator/emulator_main \
		/google-cloud-sdk/bin/cloud_spanner_emulator/emulator_main; do
		[ -x "$c" ] && bin="$c" && break
	done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
	echo "start.sh: Cloud Spanner emulator not found (set EMULATOR_BIN)" >&2
	exit 1
fi

mkdir -p "$state"
if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
	echo "export SPANNER_EMULATOR_HOST=$(cat "$state/host")"
	exit 0
fi

host="127.0.0.1:$port"
nohup "$bin" --host_port "$host" >"$state/log" 2>&1 &
echo $! >"$state/pid"
echo "$host" >"$state/host"
for _ in $(seq 1 100); do
	if answers "$host"; then
		echo "export SPANNER_EMULATOR_HOST=$host"
		exit 0
	fi
	kill -0 "$(cat "$state/pid")" 2>/dev/null || break
	sleep 0.1
done
echo "start.sh: emulator did not come up on $host; log: $state/log" >&2
tail -20 "$state/log" >&2 || true
exit 1
