#!/usr/bin/env bash
# deps.sh - installs (if missing) what jupiter's tests, `make run` and
# `make bench` need, then prints the versions. Idempotent: a second run
# installs nothing.
#
#   scripts/deps.sh           redis-server, redis-cli, redis-benchmark, gcc (for
#                             go test -race) and a Cloud Spanner emulator (for
#                             the cluster tests)
#   scripts/deps.sh --bench   redis + nutcracker (twemproxy) and ss (iproute2)
#   scripts/deps.sh --run     only what `make run` needs (redis)
#
# Packages come from Debian's apt sources (redis-server, redis-tools,
# nutcracker, iproute2). The Spanner emulator comes from the gcloud SDK
# (emulator_main; the google-cloud-cli-spanner-emulator Debian package when
# the Google Cloud apt source is configured), or is not needed when
# SPANNER_EMULATOR_HOST names a running one. With CI set, anything missing
# that cannot be installed is an error; locally it is a warning (the tests
# that need it skip).
#
# Environment: NO_INSTALL=1 never calls apt-get (only checks).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

want_bench=0 want_test=1
for a in "$@"; do
	case $a in
		--bench) want_bench=1 want_test=0 ;;
		--run) want_test=0 ;;
		-h|--help) sed -n '2,20p' "$0"; exit 0 ;;
		*) die "unknown argument $a (want --bench or --run)" ;;
	esac
done

command -v go >/dev/null || die "go not found on PATH (this repo needs Go $(awk '/^go /{print $2}' "$ROOT/go.mod"))"

SUDO=()
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || die "not root and sudo not found: cannot apt-get install"
	SUDO=(sudo)
	[ -t 0 ] || SUDO=(sudo -n)
fi

APT_UPDATED=0
apt_install() { # packages...
	[ "${NO_INSTALL:-0}" = 1 ] && die "missing packages: $* (NO_INSTALL=1)"
	command -v apt-get >/dev/null || die "missing packages: $* and no apt-get to install them"
	local aptlog
	aptlog="$(mktemp -t jupiter-apt.XXXXXX)"
	export DEBIAN_FRONTEND=noninteractive
	if [ $APT_UPDATED = 0 ]; then
		log "apt-get update"
		"${SUDO[@]}" apt-get update -q >"$aptlog" 2>&1 || { tail -20 "$aptlog" >&2; die "apt-get update failed (log $aptlog)"; }
		APT_UPDATED=1
	fi
	log "apt-get install -y $*"
	"${SUDO[@]}" apt-get install -y -q --no-install-recommends "$@" >>"$aptlog" 2>&1 ||
		{ tail -20 "$aptlog" >&2; die "apt-get install $* failed (log $aptlog)"; }
	rm -f "$aptlog"
}

# pid_6379: PID of the process listening on 6379, if any (needs ss).
pid_6379() { ss -ltnpH 'sport = :6379' 2>/dev/null | grep -o 'pid=[0-9]*' | sed -n '1s/pid=//p'; }

# ------------------------------------------------------------------ redis & co
need=()
command -v redis-server >/dev/null || need+=(redis-server)
{ command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null; } || need+=(redis-tools)
# go test -race needs cgo, hence a C compiler
[ $want_test = 0 ] || command -v "$(go env CC 2>/dev/null || echo gcc)" >/dev/null || need+=(gcc libc6-dev)
if [ $want_bench = 1 ]; then
	command -v nutcracker >/dev/null || need+=(nutcracker)
	command -v ss >/dev/null || need+=(iproute2)
fi
if [ ${#need[@]} -gt 0 ]; then
	had6379=0
	port_busy 6379 && had6379=1
	apt_install "${need[@]}"
	# The redis-server package starts a system instance on 6379 where an init
	# system runs; this install started it, so stop it (never one that ran before).
	if [ $had6379 = 0 ] && port_busy 6379; then
		log "stopping the system redis-server on 6379 that the package install started"
		if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
			"${SUDO[@]}" systemctl stop redis-server || true
			"${SUDO[@]}" systemctl disable redis-server >/dev/null 2>&1 || true
		elif command -v service >/dev/null; then
			"${SUDO[@]}" service redis-server stop || true
		fi
		if port_busy 6379; then
			p="$(cat /run/redis/redis-server.pid 2>/dev/null || pid_6379 || true)"
			if [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = redis-server ]; then
				"${SUDO[@]}" kill -TERM "$p" || true
				for _ in $(seq 50); do port_busy 6379 || break; sleep 0.1; done
			fi
		fi
		port_busy 6379 && log "WARNING: 6379 is still in use; use LISTEN=:6380 for make run"
	fi
fi
for b in redis-server redis-cli redis-benchmark; do
	command -v "$b" >/dev/null || die "$b still not on PATH after installing"
done
if [ $want_bench = 1 ]; then
	command -v nutcracker >/dev/null || die "nutcracker still not on PATH after installing"
fi

# ------------------------------------------------------------------ Spanner emulator
find_emulator() {
	local root="" c
	if [ -n "${EMULATOR_BIN:-}" ]; then
		[ -x "$EMULATOR_BIN" ] && { echo "$EMULATOR_BIN"; return 0; }
		return 1
	fi
	command -v gcloud >/dev/null && root="$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null || true)"
	for c in ${root:+"$root/bin/cloud_spanner_emulator/emulator_main"} \
		/usr/lib/google-cloud-sdk/bin/cloud_spanner_emulator/emulator_main \
		/google-cloud-sdk/bin/cloud_spanner_emulator/emulator_main; do
		[ -x "$c" ] && { echo "$c"; return 0; }
	done
	return 1
}

EMULATOR=""
if [ $want_test = 1 ]; then
	if [ -n "${SPANNER_EMULATOR_HOST:-}" ]; then
		EMULATOR="SPANNER_EMULATOR_HOST=$SPANNER_EMULATOR_HOST"
	elif EMULATOR="$(find_emulator)"; then
		:
	else
		EMULATOR=""
		cand=""
		if [ "${NO_INSTALL:-0}" != 1 ] && command -v apt-cache >/dev/null; then
			cand="$(apt-cache policy google-cloud-cli-spanner-emulator 2>/dev/null | awk '/Candidate:/{print $2}')"
			if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
				# the package lists may just be stale or missing
				if "${SUDO[@]}" apt-get update -q >/dev/null 2>&1; then APT_UPDATED=1; fi
				cand="$(apt-cache policy google-cloud-cli-spanner-emulator 2>/dev/null | awk '/Candidate:/{print $2}')"
			fi
		fi
		if [ -n "$cand" ] && [ "$cand" != "(none)" ]; then
			apt_install google-cloud-cli-spanner-emulator
			EMULATOR="$(find_emulator)" || die "installed google-cloud-cli-spanner-emulator but emulator_main is still not found"
		else
			msg="Cloud Spanner emulator not found (no SPANNER_EMULATOR_HOST, no gcloud SDK emulator_main,
  and no google-cloud-cli-spanner-emulator package to install from the configured apt sources).
  Install one of:
  - the Google Cloud apt source (https://cloud.google.com/sdk/docs/install#deb), then
      apt-get install google-cloud-cli google-cloud-cli-spanner-emulator
  - gcloud components install cloud-spanner-emulator   (a gcloud SDK installed from the tarball)
  - or run an emulator elsewhere and export SPANNER_EMULATOR_HOST=host:9010
  (EMULATOR_BIN=/path/to/emulator_main points at a binary directly)"
			if is_ci; then
				die "$msg"
			fi
			log "WARNING: $msg"
			log "WARNING: the cluster (Spanner) tests will be skipped"
		fi
	fi
fi

# ------------------------------------------------------------------ versions
{
	echo "go:              $(go version | awk '{print $3, $4}')"
	echo "redis-server:    $(redis-server --version | awk '{print $3}' | sed 's/^v=//')"
	echo "redis-cli:       $(redis-cli --version | awk '{print $2}')"
	echo "redis-benchmark: $(redis-benchmark --version | awk '{print $2}')"
	if command -v nutcracker >/dev/null; then
		echo "nutcracker:      $(nutcracker --version 2>&1 | awk 'NR==1{print $NF}')"
	fi
	if [ $want_test = 1 ]; then
		if [ -z "$EMULATOR" ]; then
			echo "spanner emulator: MISSING"
		elif [[ $EMULATOR == SPANNER_EMULATOR_HOST=* ]]; then
			echo "spanner emulator: $EMULATOR"
		else
			v="$(dpkg-query -W -f '${Version}' google-cloud-cli-spanner-emulator 2>/dev/null || true)"
			echo "spanner emulator: $EMULATOR${v:+ (google-cloud-cli-spanner-emulator $v)}"
		fi
	fi
} | sed 's/^/[deps] /' >&2
