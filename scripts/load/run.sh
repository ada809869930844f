#!/usr/bin/env bash
# Load comparison of feedd's warm feed endpoint against a bare net/http
# handler and nginx serving the same bytes as a static file.
#
#   scripts/load/run.sh            # DURATION=8 ROUNDS=3 CONNS=64 by default
#
# Needs wrk and nginx (apt-get install -y wrk nginx-light). Everything runs on
# loopback; on a machine with 2+ CPUs each server is pinned to CPU 1 and wrk to
# CPU 0 so that every server gets the same single core.
# Prints requests/s and p99 latency per server and scenario (median of ROUNDS
# runs) and the ratios feedd/bare and feedd/nginx.
set -euo pipefail

DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
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

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A RPS P99
for scenario in 200 304 gzip; do
	for name in feedd bare nginx; do : >"$TMP/$scenario-$name"; done
	for round in $(seq "$ROUNDS"); do
		for name in feedd bare nginx; do
			case $name in feedd) port=$FEEDD_PORT ;; bare) port=$BARE_PORT ;; nginx) port=$NGINX_PORT ;; esac
			run "$port" "$scenario" >>"$TMP/$scenario-$name"
			echo "  $scenario $name round $round: $(tail -1 "$TMP/$scenario-$name")" >&2
		done
	done
	for name in feedd bare nginx; do
		RPS[$scenario-$name]=$(awk '{print $1}' "$TMP/$scenario-$name" | median)
		P99[$scenario-$name]=$(awk '{print $2}' "$TMP/$scenario-$name" | median)
	done
done

echo
echo "feed JSON $(stat -c %s "$TMP/feed.json") bytes, gzip $(stat -c %s "$TMP/feed.json.gz") bytes; wrk -t1 -c$CONNS -d${DURATION}s, median of $ROUNDS; server pinned: ${SERVER_CPU[*]:-no}"
printf '%-6s %-6s %12s %10s\n' scenario server 'req/s' 'p99 ms'
for scenario in 200 304 gzip; do
	for name in feedd bare nginx; do
		printf '%-6s %-6s %12.0f %10.3f\n' "$scenario" "$name" "${RPS[$scenario-$name]}" "${P99[$scenario-$name]}"
	done
done
echo
printf '%-6s %14s %14s %14s %14s  %s\n' scenario 'rps feedd/bare' 'rps feedd/ngx' 'p99 feedd/bare' 'p99 feedd/ngx' 'targets (rps>=0.90 bare, p99<=1.25 bare)'
fail=0
for scenario in 200 304 gzip; do
	line=$(awk -v fr="${RPS[$scenario-feedd]}" -v br="${RPS[$scenario-bare]}" -v nr="${RPS[$scenario-nginx]}" \
		-v fp="${P99[$scenario-feedd]}" -v bp="${P99[$scenario-bare]}" -v np="${P99[$scenario-nginx]}" 'BEGIN {
		ok = (fr / br >= 0.90 && fp / bp <= 1.25) ? "ok" : "MISSED"
		printf "%14.2f %14.2f %14.2f %14.2f  %s", fr / br, fr / nr, fp / bp, fp / np, ok }')
	printf '%-6s %s\n' "$scenario" "$line"
	[[ $line == *MISSED ]] && fail=1
done

# The cores are shared, so throughput drifts between rounds. Two views that
# drift disturbs less: the ratio within each round (feedd and bare run back
# to back), median over rounds; and the best round of each server.
echo
printf '%-6s %22s %22s %20s %20s\n' scenario 'rps feedd/bare paired' 'p99 feedd/bare paired' 'rps feedd/bare best' 'p99 feedd/bare best'
for scenario in 200 304 gzip; do
	pr=$(paste "$TMP/$scenario-feedd" "$TMP/$scenario-bare" | awk '{print $1 / $3}' | median)
	pp=$(paste "$TMP/$scenario-feedd" "$TMP/$scenario-bare" | awk '{print $2 / $4}' | median)
	best=$(paste "$TMP/$scenario-feedd" "$TMP/$scenario-bare" | awk '
		NR == 1 || $1 > fr { fr = $1 } NR == 1 || $3 > br { br = $3 }
		NR == 1 || $2 < fp { fp = $2 } NR == 1 || $4 < bp { bp = $4 }
		END { printf "%20.2f %20.2f", fr / br, fp / bp }')
	printf '%-6s %22.2f %22.2f %s\n' "$scenario" "$pr" "$pp" "$best"
done
exit $fail
