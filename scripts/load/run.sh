#!/usr/bin/env bash
# Load comparison of the feedd binary's warm feed endpoint against a bare
# net/http handler and nginx serving the same bytes as a static file.
#
#   scripts/load/run.sh            # DURATION=3 ROUNDS=10 CONNS=64 by default
#   BINARY=bin/feedd scripts/load/run.sh   # measure a binary built elsewhere
#
# Needs wrk and nginx (apt-get install -y wrk nginx-light). Everything runs on
# loopback; on a machine with 2+ CPUs each server is pinned to CPU 1 and wrk to
# CPU 0 so that every server gets the same single core.
#
# feedd is the shipped binary, built like `make build` (CGO_ENABLED=0), run
# as `feedd serve` in a process of its own with a fresh data dir. Its
# Instagram is the sandbox, served by scripts/load in another process (the
# FEEDD_INSTAGRAM_* URLs point at it); one feed is connected through the
# admin API and the OAuth callback, polled once with all its pictures, and
# warmed before anything is measured. `feedd serve` rather than `feedd demo`:
# the demo mounts the sandbox and its front page on feedd's own router, draws
# the other sandbox accounts' pictures in the background on feedd's core and
# lowers the log level, so it is not the process operators run. The rate
# limit is raised (FEEDD_RATE_LIMIT) so that every request from wrk's single
# address still passes through the limiter without being refused.
#
# The bare handler serves feedd's own answers, captured from the running
# feedd: the same bodies and headers (but for Date and the request id, which
# it makes per request like feedd), on an http.Server with feedd's timeouts.
#
# Shared cores drift: the same server can differ by 2x from one minute to the
# next. So each scenario runs in ROUNDS short rounds; within a round the three
# servers run back to back, in reverse order every other round, and the
# feedd/bare ratio is taken within each round. The reported ratio is the
# median of those per-round ratios; the median of each server's own rounds is
# printed beside it.
# Prints requests/s and p99 latency per server and scenario and the ratios
# feedd/bare and feedd/nginx; exits 1 when a target is missed, when a server
# answers an error under load, or when feedd's feed changed during the run.
set -euo pipefail

DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-10}
CONNS=${CONNS:-64}
FEEDD_PORT=${FEEDD_PORT:-18081}
BARE_PORT=${BARE_PORT:-18082}
NGINX_PORT=${NGINX_PORT:-18083}
SANDBOX_PORT=${SANDBOX_PORT:-18084}
BINARY=${BINARY:-}
[ -z "$BINARY" ] || BINARY=$(realpath "$BINARY")

cd "$(dirname "$0")/../.."
for tool in wrk nginx curl go base64; do
	command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "missing $tool (apt-get install -y wrk nginx-light curl)" >&2; exit 1; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

TMP=$(mktemp -d)
chmod 755 "$TMP" # nginx workers run as nobody
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	[ -f "$TMP/nginx.pid" ] && kill "$(cat "$TMP/nginx.pid" 2>/dev/null)" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT
die() {
	echo "$1" >&2
	for log in feedd instagram; do
		[ -s "$TMP/$log.log" ] && { echo "--- last lines of $log.log" >&2; tail -20 "$TMP/$log.log" >&2; }
	done
	exit 1
}

SERVER_CPU=() WRK_CPU=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
	SERVER_CPU=(taskset -c 1) WRK_CPU=(taskset -c 0)
fi

# Both Go servers get the same clean environment; Go runtime settings of
# the caller reach both alike.
GOENV=(env -i "PATH=$PATH")
for v in GOGC GOMEMLIMIT GODEBUG GOMAXPROCS; do
	[ -z "${!v:-}" ] || GOENV+=("$v=${!v}")
done

echo "building..." >&2
if [ -z "$BINARY" ]; then
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$TMP/feedd" ./cmd/feedd
	BINARY=$TMP/feedd
fi
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$TMP/load" ./scripts/load
"$BINARY" version >&2

# The sandbox first: feedd's Instagram variables come from it.
FEEDD_URL=http://127.0.0.1:$FEEDD_PORT
(umask 077 && head -c 32 /dev/urandom | base64 >"$TMP/secret-key" && head -c 30 /dev/urandom | base64 | tr '+/' '-_' >"$TMP/admin-token")
"$TMP/load" -mode instagram -addr "127.0.0.1:$SANDBOX_PORT" -feedd "$FEEDD_URL" \
	-admin-token-file "$TMP/admin-token" -env "$TMP/instagram.env" -id "$TMP/feed-id" 2>"$TMP/instagram.log" & PIDS+=($!)
INSTAGRAM_PID=$!
for _ in $(seq 100); do
	[ -f "$TMP/instagram.env" ] && break
	kill -0 "$INSTAGRAM_PID" 2>/dev/null || die "the sandbox did not start"
	sleep 0.1
done
[ -f "$TMP/instagram.env" ] || die "the sandbox did not start"
mapfile -t INSTAGRAM_ENV <"$TMP/instagram.env"

"${SERVER_CPU[@]}" "${GOENV[@]}" "${INSTAGRAM_ENV[@]}" \
	FEEDD_ADDR="127.0.0.1:$FEEDD_PORT" FEEDD_PUBLIC_URL="$FEEDD_URL" FEEDD_DATA_DIR="$TMP/data" \
	FEEDD_SECRET_KEY_FILE="$TMP/secret-key" FEEDD_ADMIN_TOKEN_FILE="$TMP/admin-token" \
	FEEDD_RATE_LIMIT=1000000000 \
	"$BINARY" serve >"$TMP/feedd.log" 2>&1 & PIDS+=($!)
FEEDD_PID=$!

# The sandbox connects a feed and polls it once (pictures included).
for _ in $(seq 1800); do
	[ -f "$TMP/feed-id" ] && break
	kill -0 "$FEEDD_PID" 2>/dev/null || die "feedd stopped"
	kill -0 "$INSTAGRAM_PID" 2>/dev/null || die "the sandbox could not connect a feed"
	sleep 0.1
done
[ -f "$TMP/feed-id" ] || die "no feed connected within 3 minutes"
ID=$(cat "$TMP/feed-id")
PATH_=/api/v1/feeds/$ID

# Warm the feed and record feedd's answers for the bare handler and nginx.
"$TMP/load" -mode capture -url "$FEEDD_URL$PATH_" -out "$TMP" >"$TMP/capture.txt" || die "cannot capture the feed"
cat "$TMP/capture.txt" >&2
mkdir -p "$TMP/www/api/v1/feeds"
cp "$TMP/feed.json" "$TMP/www$PATH_"
cp "$TMP/feed.json.gz" "$TMP/www$PATH_.gz"

"${SERVER_CPU[@]}" "${GOENV[@]}" "$TMP/load" -mode bare -addr "127.0.0.1:$BARE_PORT" -from "$TMP" & PIDS+=($!)

cat >"$TMP/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $TMP/nginx-body;
	proxy_temp_path $TMP/nginx-proxy;
	fastcgi_temp_path $TMP/nginx-fastcgi;
	uwsgi_temp_path $TMP/nginx-uwsgi;
	scgi_temp_path $TMP/nginx-scgi;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	open_file_cache max=100 inactive=60s;
	server {
		listen 127.0.0.1:$NGINX_PORT;
		root $TMP/www;
		location /api/v1/feeds/ {
			default_type application/json;
			gzip_static on;
			add_header Access-Control-Allow-Origin "*";
			add_header Vary "Origin, Accept-Encoding";
			add_header Cache-Control "public, max-age=60, stale-while-revalidate=600, stale-if-error=86400";
		}
	}
}
NGINX
"${SERVER_CPU[@]}" "$NGINX" -c "$TMP/nginx.conf" -p "$TMP" & PIDS+=($!)

for port in $FEEDD_PORT $BARE_PORT $NGINX_PORT; do
	for _ in $(seq 100); do
		curl -fs -o /dev/null "http://127.0.0.1:$port$PATH_" && break
		sleep 0.1
	done
	curl -fs -o /dev/null "http://127.0.0.1:$port$PATH_" || die "server on $port did not start"
done

# Same bytes everywhere?
same_bytes() {
	local port
	for port in "$@"; do
		cmp -s <(curl -fs "http://127.0.0.1:$port$PATH_") "$TMP/feed.json" || { echo "server on $port serves other bytes" >&2; return 1; }
		cmp -s <(curl -fs -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port$PATH_") "$TMP/feed.json.gz" || { echo "server on $port serves other gzip bytes" >&2; return 1; }
	done
}
same_bytes "$FEEDD_PORT" "$BARE_PORT" "$NGINX_PORT" || die "not the same bytes"

etag() { curl -fsI "http://127.0.0.1:$1$PATH_" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag"{print $2}'; }
ETAG=$(etag "$FEEDD_PORT")

# feedd and the bare handler send the same headers too (but for the date
# and the request id) in every scenario.
headers() { curl -s -D - -o /dev/null "$@" | tr -d '\r' | grep -iv '^\(date\|x-request-id\):' | sort; }
for hdr in "X-None: 1" "Accept-Encoding: gzip" "If-None-Match: $ETAG"; do
	diff <(headers -H "$hdr" "http://127.0.0.1:$FEEDD_PORT$PATH_") <(headers -H "$hdr" "http://127.0.0.1:$BARE_PORT$PATH_") >&2 ||
		die "feedd and bare send other headers ($hdr)"
done

# run PORT SCENARIO -> "rps p99ms"; an error answer under load ends the run.
run() {
	local port=$1 scenario=$2 hdr=()
	case $scenario in
	304) hdr=(-H "If-None-Match: $(etag "$port")") ;;
	gzip) hdr=(-H "Accept-Encoding: gzip") ;;
	esac
	"${WRK_CPU[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${hdr[@]}" "http://127.0.0.1:$port$PATH_" | awk -v port="$port" '
		/Requests\/sec:/ { rps = $2 }
		/^ +99%/ { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
		           p99 = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v }
		/Non-2xx or 3xx/ { bad = 1 }
		END { if (bad) { print "server on " port " answered errors under load" > "/dev/stderr"; exit 1 }
		      printf "%s %.3f\n", rps, p99 }'
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
port_of() { case $1 in feedd) echo "$FEEDD_PORT" ;; bare) echo "$BARE_PORT" ;; nginx) echo "$NGINX_PORT" ;; esac; }

for scenario in 200 304 gzip; do
	for name in feedd bare nginx; do
		: >"$TMP/$scenario-$name"
		DURATION=1 run "$(port_of "$name")" "$scenario" >/dev/null # warm up
	done
	for round in $(seq "$ROUNDS"); do
		order=(feedd bare nginx)
		((round % 2)) || order=(nginx bare feedd)
		for name in "${order[@]}"; do
			run "$(port_of "$name")" "$scenario" >>"$TMP/$scenario-$name"
			echo "  $scenario $name round $round: $(tail -1 "$TMP/$scenario-$name")" >&2
		done
	done
done

# The comparison holds only if feedd served the captured feed all along (a
# poll or a cache rebuild that changed it would show here).
{ same_bytes "$FEEDD_PORT" && [ "$(etag "$FEEDD_PORT")" = "$ETAG" ]; } ||
	die "feedd's feed changed during the run; the figures compare different answers"

# col FILE N: the Nth column; ratio A B N: per-round A/B of column N, median.
col() { awk -v n="$2" '{print $n}' "$1"; }
ratio() { paste "$1" "$2" | awk -v n="$3" '{print $n / $(n + 2)}' | median; }

echo
echo "$("$BINARY" version); feed: $(cat "$TMP/capture.txt")"
echo "wrk -t1 -c$CONNS -d${DURATION}s, $ROUNDS rounds; server pinned: ${SERVER_CPU[*]:-no}"
printf '%-8s %-6s %12s %10s   %s\n' scenario server 'req/s' 'p99 ms' '(median of rounds)'
for scenario in 200 304 gzip; do
	for name in feedd bare nginx; do
		printf '%-8s %-6s %12.0f %10.3f\n' "$scenario" "$name" \
			"$(col "$TMP/$scenario-$name" 1 | median)" "$(col "$TMP/$scenario-$name" 2 | median)"
	done
done
echo
echo "ratios: median of per-round ratios (in brackets: ratio of the medians above)"
printf '%-8s %18s %18s %18s %18s  %s\n' scenario 'req/s feedd/bare' 'p99 feedd/bare' 'req/s feedd/nginx' 'p99 feedd/nginx' 'targets: req/s >= 0.90 bare, p99 <= 1.25 bare'
fail=0
for scenario in 200 304 gzip; do
	f=$TMP/$scenario-feedd b=$TMP/$scenario-bare n=$TMP/$scenario-nginx
	rb=$(ratio "$f" "$b" 1) pb=$(ratio "$f" "$b" 2) rn=$(ratio "$f" "$n" 1) pn=$(ratio "$f" "$n" 2)
	rb2=$(awk -v a="$(col "$f" 1 | median)" -v b="$(col "$b" 1 | median)" 'BEGIN {print a / b}')
	pb2=$(awk -v a="$(col "$f" 2 | median)" -v b="$(col "$b" 2 | median)" 'BEGIN {print a / b}')
	ok=$(awk -v r="$rb" -v p="$pb" 'BEGIN {print (r >= 0.90 && p <= 1.25) ? "ok" : "MISSED"}')
	printf '%-8s %10.2f (%4.2f) %10.2f (%4.2f) %18.2f %18.2f  %s\n' "$scenario" "$rb" "$rb2" "$pb" "$pb2" "$rn" "$pn" "$ok"
	[ "$ok" = ok ] || fail=1
done
exit $fail
