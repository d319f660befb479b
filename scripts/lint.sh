#!/usr/bin/env bash
# lint.sh - `make lint`: gofmt -l (must print nothing), go vet ./..., and
# staticcheck ./... (installed into GOBIN at STATICCHECK_VERSION when missing
# or at another version), and shellcheck on the scripts when it is installed.
# Runs them all and fails if any of them did.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# staticcheck 2026.2.2 (v0.8.2); the 2026.x releases are the ones that know Go 1.26.
STATICCHECK_VERSION=${STATICCHECK_VERSION:-v0.8.2}
gobin="$(go env GOBIN)"
[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
staticcheck="$gobin/staticcheck"
failed=()

files="$(git ls-files -co --exclude-standard -- '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*')"
out=""
# shellcheck disable=SC2086 # word splitting intended: Go file names have no spaces
[ -z "$files" ] || out="$(gofmt -l $files)"
if [ -n "$out" ]; then
	log "gofmt -l: these files need gofmt -w:"
	echo "$out" >&2
	failed+=(gofmt)
else
	log "gofmt -l: clean"
fi

log "go vet ./..."
go vet ./... || failed+=(vet)

if ! [ -x "$staticcheck" ] || ! "$staticcheck" -version 2>/dev/null | grep -qF "(${STATICCHECK_VERSION#v})"; then
	log "installing staticcheck $STATICCHECK_VERSION into $gobin"
	GOFLAGS='' go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" || die "go install staticcheck failed"
fi
log "$("$staticcheck" -version) ./..."
"$staticcheck" ./... || failed+=(staticcheck)

if command -v shellcheck >/dev/null; then
	log "shellcheck scripts/*.sh .ci/run"
	shellcheck -x -P SCRIPTDIR scripts/*.sh .ci/run || failed+=(shellcheck)
else
	log "shellcheck not installed, shell scripts not checked (apt-get install shellcheck)"
fi

[ ${#failed[@]} -eq 0 ] || die "lint failed: ${failed[*]}"
log "lint: clean"
