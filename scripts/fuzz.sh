#!/usr/bin/env bash
# fuzz.sh - `make fuzz`: runs every Fuzz* target of the module for FUZZTIME
# (default 10s) each, one after the other (go test runs one fuzz target at a
# time). Targets are discovered with `go test -list`, so new ones are picked
# up without editing this file. New crashers land in the package's
# testdata/fuzz/<Name>/ and fail the run.
#
#   FUZZTIME=30s scripts/fuzz.sh [packages]     (default ./...)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

FUZZTIME=${FUZZTIME:-10s}
[ $# -gt 0 ] || set -- ./...

# `go test -list` prints each package's matching names, then "ok <pkg> <time>".
list="$(go test -count=1 -run '^$' -list '^Fuzz' "$@")" || { echo "$list" >&2; die "go test -list failed"; }
targets=()
names=()
while read -r first second _; do
	case $first in
		Fuzz*) names+=("$first") ;;
		ok)
			for n in "${names[@]}"; do targets+=("$second $n"); done
			names=()
			;;
		*) names=() ;;
	esac
done <<<"$list"

[ ${#targets[@]} -gt 0 ] || { log "no Fuzz* targets found"; exit 0; }
log "${#targets[@]} fuzz targets, FUZZTIME=$FUZZTIME each"

failed=()
for t in "${targets[@]}"; do
	pkg=${t% *}; name=${t#* }
	log "$pkg $name"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"; then
		failed+=("$pkg $name")
	fi
done
if [ ${#failed[@]} -gt 0 ]; then
	log "FAILED: ${failed[*]}"
	exit 1
fi
log "all ${#targets[@]} fuzz targets passed"
