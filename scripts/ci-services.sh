#!/usr/bin/env bash
# Starts the servers the tests use, on loopback, for as long as the calling
# shell lives: a SeaweedFS S3 server (built from its Go module, cached) and a
# throwaway PostgreSQL cluster (Debian's postgresql). Waits until both
# answer and prints the variables the tests read, as export lines:
#
#   eval "$(scripts/ci-services.sh)"      # start; progress goes to stderr
#   scripts/ci-services.sh stop           # stop what the eval started
#
# Nothing leaves the machine; data lives in a temp dir removed at stop.
set -euo pipefail

WEED_MODULE=github.com/seaweedfs/seaweedfs
WEED_VERSION=v0.0.0-20261109003541-7506e5f91cd6
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/feedd-ci
BUCKET=feedd-test
ACCESS_KEY=feedd-ci
# Throwaway credentials of a throwaway server on loopback.
SECRET_KEY=feedd-ci-secret-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')

log() { echo "ci-services: $*" >&2; }

stop() {
	local dir=${CI_SERVICES_DIR:-}
	[ -n "$dir" ] && [ -d "$dir" ] || { log "nothing to stop (CI_SERVICES_DIR unset)"; return 0; }
	if [ -f "$dir/weed.pid" ]; then
		local pid
		pid=$(cat "$dir/weed.pid")
		kill "$pid" 2>/dev/null || true
		for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
		kill -9 "$pid" 2>/dev/null || true
	fi
	if [ -f "$dir/pg/postmaster.pid" ]; then
		as_postgres "$PG_BIN/pg_ctl" -D "$dir/pg" -m immediate stop >/dev/null 2>&1 || true
	fi
	rm -rf "$dir"
}

# as_postgres runs a PostgreSQL tool: initdb refuses to run as root.
as_postgres() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)

if [ "${1:-}" = stop ]; then
	stop
	exit 0
fi

# free_port prints a loopback port nothing listens on, as is the port
# 10000 above it (SeaweedFS's gRPC port); both below the kernel's ephemeral
# range, so no outgoing connection holds them.
free_port() {
	local p
	while :; do
		p=$((10000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
			! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

# wait_for runs the command until it succeeds, for up to $1 seconds, as
# long as SeaweedFS runs.
wait_for() {
	local secs=$1 what=$2
	shift 2
	local end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if [ $SECONDS -ge $end ] || ! kill -0 "$(cat "$CI_SERVICES_DIR/weed.pid")" 2>/dev/null; then
			log "$what did not come up"
			tail -20 "$CI_SERVICES_DIR/weed.log" >&2
			return 1
		fi
		sleep 0.2
	done
}

# --- SeaweedFS: built once per version into the cache.
weed=$CACHE/weed-$WEED_VERSION
if [ ! -x "$weed" ]; then
	mkdir -p "$CACHE"
	start=$SECONDS
	log "building SeaweedFS $WEED_VERSION (once; cached in $CACHE)"
	# go install refuses the module (its go.mod has replace directives), so
	# build it from a copy of its source, as its own main module.
	srcdir=$(cd "$CACHE" && GOFLAGS=-mod=mod go mod download -json "$WEED_MODULE@$WEED_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$srcdir" ] || { log "go mod download gave no source dir"; exit 1; }
	work=$(mktemp -d "$CACHE/weed-src.XXXXXX")
	cp -r "$srcdir/." "$work"
	chmod -R u+w "$work"
	(cd "$work" && CGO_ENABLED=0 go build -trimpath -o "$weed.tmp" ./weed) >&2
	mv "$weed.tmp" "$weed"
	rm -rf "$work"
	log "built SeaweedFS in $((SECONDS - start))s"
fi

export CI_SERVICES_DIR=$(mktemp -d /tmp/feedd-ci-services.XXXXXX)
chmod 755 "$CI_SERVICES_DIR"
trap 'stop' EXIT

start=$SECONDS
cat >"$CI_SERVICES_DIR/s3.json" <<EOF
{"identities": [{"name": "feedd",
  "credentials": [{"accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY"}],
  "actions": ["Read:$BUCKET", "List:$BUCKET", "Tagging:$BUCKET", "Write:$BUCKET"]}]}
EOF
master=$(free_port)
volume=$(free_port)
filer=$(free_port)
s3=$(free_port)
mkdir -p "$CI_SERVICES_DIR/weed"
"$weed" server -dir="$CI_SERVICES_DIR/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
	-master.port="$master" -master.telemetry=false -master.volumeSizeLimitMB=64 \
	-volume.port="$volume" -volume.max=100 -volume.preStopSeconds=0 \
	-filer -filer.port="$filer" -filer.localSocket="$CI_SERVICES_DIR/filer.sock" \
	-s3 -s3.port="$s3" -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$CI_SERVICES_DIR/s3.json" \
	-s3.localSocket="$CI_SERVICES_DIR/s3.sock" \
	>"$CI_SERVICES_DIR/weed.log" 2>&1 &
echo $! >"$CI_SERVICES_DIR/weed.pid"

# --- PostgreSQL: a cluster of our own, trust auth on loopback only.
pg=""
if [ -n "$PG_BIN" ]; then
	pg=$(free_port)
	mkdir -p "$CI_SERVICES_DIR/pg"
	[ "$(id -u)" -ne 0 ] || chown postgres "$CI_SERVICES_DIR/pg"
	as_postgres "$PG_BIN/initdb" -D "$CI_SERVICES_DIR/pg" -A trust -U feedd >/dev/null
	as_postgres "$PG_BIN/pg_ctl" -D "$CI_SERVICES_DIR/pg" -l "$CI_SERVICES_DIR/pg/server.log" -w \
		-o "-p $pg -k $CI_SERVICES_DIR/pg -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=300" \
		start >/dev/null
else
	log "PostgreSQL is not installed (apt-get install postgresql): no FEEDD_TEST_DATABASE_URL"
fi

# The bucket, once the filer answers; the feedd identity may not create it.
wait_for 60 "SeaweedFS's filer" "$weed" shell -master="127.0.0.1:$master" -filer="127.0.0.1:$filer" <<<"fs.ls /"
"$weed" shell -master="127.0.0.1:$master" -filer="127.0.0.1:$filer" <<<"s3.bucket.create -name $BUCKET" >/dev/null 2>&1
# Any S3 answer (403 for an unsigned request) means the gateway is up.
wait_for 60 "SeaweedFS's S3 gateway" bash -c "exec 3<>/dev/tcp/127.0.0.1/$s3"
trap - EXIT
log "services up in $((SECONDS - start))s: S3 on 127.0.0.1:$s3${pg:+, PostgreSQL on 127.0.0.1:$pg}"

echo "export CI_SERVICES_DIR=$CI_SERVICES_DIR"
echo "export FEEDD_TEST_S3_URL='s3://$BUCKET/ci?endpoint=http://127.0.0.1:$s3&region=us-east-1'"
echo "export AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY"
if [ -n "$pg" ]; then
	echo "export FEEDD_TEST_DATABASE_URL=postgres://feedd@127.0.0.1:$pg/postgres"
fi
