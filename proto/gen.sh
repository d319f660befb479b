#!/usr/bin/env bash
# Regenerates proto/v1/*.pb.go from proto/v1/*.proto (called by `make proto`).
#
# Needs protoc (apt-get install -y protobuf-compiler) and protoc-gen-go at the
# version of google.golang.org/protobuf in go.mod; the script installs the
# latter into $(go env GOPATH)/bin when it is missing or at another version.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

command -v protoc >/dev/null || {
	echo "gen.sh: protoc not found (apt-get install -y protobuf-compiler)" >&2
	exit 1
}

want="$(go list -m -f '{{.Version}}' google.golang.org/protobuf)"
gobin="$(go env GOBIN)"
[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
plugin="$gobin/protoc-gen-go"
have=""
[ -x "$plugin" ] && have="$("$plugin" --version 2>/dev/null | awk '{print $2}')"
if [ "$have" != "$want" ]; then
	echo "gen.sh: installing protoc-gen-go $want" >&2
	GOFLAGS= go install "google.golang.org/protobuf/cmd/protoc-gen-go@$want"
fi

protoc \
	--plugin=protoc-gen-go="$plugin" \
	--proto_path=proto \
	--go_out=. \
	--go_opt=module=github.com/alphauslabs/jupiter \
	proto/v1/*.proto
