#!/usr/bin/env bash
# Stops the emulator started by start.sh (by its recorded pid only).
set -euo pipefail
state="${EMULATOR_STATE_DIR:-${TMPDIR:-/tmp}/jupiter-spanner-emulator}"
if [ -f "$state/pid" ]; then
	pid="$(cat "$state/pid")"
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	rm -f "$state/pid" "$state/host"
fi
