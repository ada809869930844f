#!/usr/bin/env bash
# Load comparison of feedd's warm feed endpoint against a bare net/http
# handler and nginx serving the same bytes as a static file.
#
#   scripts/load/run.sh            # DURATION=3 ROUNDS=10 CONNS=64 by default
#
# Needs wrk and nginx (apt-get install -y wrk nginx-light). Everything runs on
# loopback; on a machine with 2+ CPUs each server is pinned to CPU 1 and wrk to
# CPU 0 so that every server gets the same single core.
#
# Shared cores drift: the same server can differ by 2x from one minute to the
# next. So each scenario runs in ROUNDS short rounds; within a round the three
# servers run back to back, in reverse order every other round, and the
# feedd/bare ratio is taken within each round. The reported ratio is the
# median of those per-round ratios; the median of each server's own rounds is
# printed beside it.
# Prints requests/s and p99 latency per server and scenario and the ratios
# feedd/bare and feedd/nginx; exits 1 when a target is missed.
set -euo pipefail

DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-10}
CONNS=${CONNS:-64}
FEEDD_PORT=${FEEDD_PORT:-18081}
BARE_PORT=${BARE_PORT:-18082}
NGINX_PORT=${NGINX_PORT:-18083}
ID=k3v9x2m4q8
PATH_=/api/v1/feeds/$ID

cd "$(dirname "$0")/../.."
for tool in wrk nginx curl go; do
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

SERVER_CPU=() WRK_CPU=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
	SERVER_CPU=(taskset -c 1) WRK_CPU=(taskset -c 0)
fi

echo "building..." >&2
go build -o "$TMP/load" ./scripts/load
mkdir -p "$TMP/www/api/v1/feeds"
"$TMP/load" -dump "$TMP" >&2
cp "$TMP/feed.json" "$TMP/www$PATH_"
cp "$TMP/feed.json.gz" "$TMP/www$PATH_.gz"

"${SERVER_CPU[@]}" "$TMP/load" -mode feedd -addr "127.0.0.1:$FEEDD_PORT" & PIDS+=($!)
"${SERVER_CPU[@]}" "$TMP/load" -mode bare -addr "127.0.0.1:$BARE_PORT" & PIDS+=($!)

cat >"$TMP/nginx.conf" <<EOF
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
EOF
"${SERVER_CPU[@]}" "$NGINX" -c "$TMP/nginx.conf" -p "$TMP" & PIDS+=($!)

for port in $FEEDD_PORT $BARE_PORT $NGINX_PORT; do
	for _ in $(seq 100); do
		curl -fs -o /dev/null "http://127.0.0.1:$port$PATH_" && break
		sleep 0.1
	done
	curl -fs -o /dev/null "http://127.0.0.1:$port$PATH_" || { echo "server on $port did not start" >&2; exit 1; }
done

# Same bytes everywhere?
for port in $FEEDD_PORT $BARE_PORT $NGINX_PORT; do
	cmp -s <(curl -fs "http://127.0.0.1:$port$PATH_") "$TMP/feed.json" || { echo "server on $port serves other bytes" >&2; exit 1; }
	cmp -s <(curl -fs -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port$PATH_") "$TMP/feed.json.gz" || { echo "server on $port serves other gzip bytes" >&2; exit 1; }
done

etag() { curl -fsI "http://127.0.0.1:$1$PATH_" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag"{print $2}'; }

# feedd and the bare handler send the same headers too (but for the date
# and the request id) in every scenario.
headers() { curl -s -D - -o /dev/null "$@" | tr -d '\r' | grep -iv '^\(date\|x-request-id\):' | sort; }
for hdr in "X-None: 1" "Accept-Encoding: gzip" "If-None-Match: $(etag "$FEEDD_PORT")"; do
	diff <(headers -H "$hdr" "http://127.0.0.1:$FEEDD_PORT$PATH_") <(headers -H "$hdr" "http://127.0.0.1:$BARE_PORT$PATH_") >&2 ||
		{ echo "feedd and bare send other headers ($hdr)" >&2; exit 1; }
done

# run PORT SCENARIO -> "rps p99ms"
run() {
	local port=$1 scenario=$2 hdr=()
	case $scenario in
	304) hdr=(-H "If-None-Match: $(etag "$port")") ;;
	gzip) hdr=(-H "Accept-Encoding: gzip") ;;
	esac
	"${WRK_CPU[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${hdr[@]}" "http://127.0.0.1:$port$PATH_" | awk '
		/Requests\/sec:/ { rps = $2 }
		/^ +99%/ { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
		           p99 = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v }
		/Non-2xx or 3xx/ { bad = 1 }
		END { if (bad) print "wrk saw errors" > "/dev/stderr"; printf "%s %.3f\n", rps, p99 }'
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

# col FILE N: the Nth column; ratio A B N: per-round A/B of column N, median.
col() { awk -v n="$2" '{print $n}' "$1"; }
ratio() { paste "$1" "$2" | awk -v n="$3" '{print $n / $(n + 2)}' | median; }

echo
echo "feed JSON $(stat -c %s "$TMP/feed.json") bytes, gzip $(stat -c %s "$TMP/feed.json.gz") bytes; wrk -t1 -c$CONNS -d${DURATION}s, $ROUNDS rounds; server pinned: ${SERVER_CPU[*]:-no}"
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
