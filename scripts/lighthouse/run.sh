#!/usr/bin/env bash
# Lighthouse on a page that is not feedd's: a small bakery site (header, a
# paragraph, the snippet with 4 columns and 8 posts, opening hours, a
# footer) on its own origin, http://localhost:HOST_PORT, with feedd on
# another, http://127.0.0.1:PORT. feedd is the shipped binary run as
# `feedd demo` (the server with the built-in Instagram sandbox and its demo
# feed). Two builds run side by side, each with the snippet its setup page
# gave out:
#
#   current   the working tree, with the three-line snippet (stylesheet,
#             element, script) pasted in the page's body
#   head      the same with the stylesheet line in the page's head instead
#   baseline  BASELINE (default: the commit before the snippet's element held
#             the feed's space), with the two-line snippet (element, script)
#
# Each build is measured RUNS times with Lighthouse's desktop and mobile
# presets, alternating, in Debian's Chromium; the medians are printed as a
# Markdown table. Exits 1 when the current build misses CLS <= 0.01,
# performance >= 0.98 or accessibility 1.
#
#   scripts/lighthouse/run.sh            # RUNS=3
#   RUNS=5 BASELINE=v1.2.0 scripts/lighthouse/run.sh
#
# A measurement to run by hand, not part of `go test ./...` or CI. Needs
# node and npm (lighthouse 12.2.3 is installed once into LH_DIR, default
# ~/.cache/feedd-lighthouse), chromium, go, git and curl. The reports stay in
# REPORTS (default: a temporary directory, removed at exit) when it is set.
set -euo pipefail

RUNS=${RUNS:-3}
BASELINE=${BASELINE:-afda53c^}
HOST_PORT=${HOST_PORT:-18190}
CURRENT_PORT=${CURRENT_PORT:-18191}
BASELINE_PORT=${BASELINE_PORT:-18192}
LH_VERSION=12.2.3
LH_DIR=${LH_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/feedd-lighthouse}

cd "$(dirname "$0")/../.."
HERE=scripts/lighthouse
for tool in node npm go git curl chromium; do
	command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y nodejs npm chromium git curl)" >&2; exit 1; }
done

if [ "$(node -p "require('$LH_DIR/node_modules/lighthouse/package.json').version" 2>/dev/null)" != "$LH_VERSION" ]; then
	echo "installing lighthouse $LH_VERSION into $LH_DIR" >&2
	mkdir -p "$LH_DIR"
	npm install --prefix "$LH_DIR" --no-save --no-audit --no-fund --save-exact "lighthouse@$LH_VERSION" >&2
fi
LIGHTHOUSE="$LH_DIR/node_modules/.bin/lighthouse"

TMP=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT
REPORTS=${REPORTS:-$TMP/reports}
mkdir -p "$REPORTS" "$TMP/site"

echo "building the current tree and $BASELINE" >&2
CGO_ENABLED=0 go build -trimpath -o "$TMP/feedd-current" ./cmd/feedd
mkdir "$TMP/base"
git archive "$BASELINE" | tar -x -C "$TMP/base"
(cd "$TMP/base" && CGO_ENABLED=0 go build -trimpath -o "$TMP/feedd-baseline" ./cmd/feedd)

# start runs a build's demo on its port and prints its demo feed's id once
# the feed's pictures are stored.
start() {
	local build=$1 port=$2 base="http://127.0.0.1:$2"
	env -i "PATH=$PATH" FEEDD_ADDR="127.0.0.1:$port" FEEDD_RATE_LIMIT=10000 \
		"$TMP/feedd-$build" demo --data-dir "$TMP/$build-data" >"$TMP/$build.log" 2>&1 &
	PIDS+=($!)
	local id=""
	for _ in $(seq 600); do
		id=$(curl -fs "$base/" 2>/dev/null | grep -o 'data-feedd="[a-z0-9]*"' | head -1 | cut -d'"' -f2 || true)
		if [ -n "$id" ] && [ "$(curl -fs "$base/feeds/$id.html?limit=8" | grep -c '<li ')" -ge 8 ]; then
			echo "$id"
			return
		fi
		sleep 0.1
	done
	echo "$build: no demo feed after 60s" >&2
	tail -20 "$TMP/$build.log" >&2
	exit 1
}
CURRENT_ID=$(start current "$CURRENT_PORT")
BASELINE_ID=$(start baseline "$BASELINE_PORT")

# page writes the bakery page NAME with HEAD in its head and SNIPPET
# between its paragraphs.
page() {
	cat >"$TMP/site/$1.html" <<HTML
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="description" content="Crumb & Co., a bakery on Mill Lane: sourdough, rye and brioche every morning.">
<title>Crumb &amp; Co. Bakery</title>
<link rel="stylesheet" href="/bakery.css">
$2
</head>
<body>
<header><p class="brand">Crumb &amp; Co. Bakery</p></header>
<main>
<h1>Fresh bread, every morning</h1>
<p>Sourdough, rye and brioche baked before sunrise in our wood-fired oven. Here is what came out of it this week:</p>
$3
<h2>Opening hours</h2>
<p>Tuesday to Saturday 7:00 to 18:00, Sunday 8:00 to 13:00. Closed on Mondays.</p>
</main>
<footer><p>12 Mill Lane · 01234 567890</p></footer>
</body>
</html>
HTML
}
cat >"$TMP/site/bakery.css" <<'CSS'
body { margin: 0; font: 16px/1.5 Georgia, serif; color: #222; background: #fffaf3 }
header { background: #7a4b2a; color: #fff8ef; padding: 16px 24px }
.brand { margin: 0; font-size: 28px }
main { max-width: 960px; margin: 0 auto; padding: 16px }
footer { padding: 24px; background: #eee2d0 }
footer p { margin: 0 }
CSS
F="http://127.0.0.1:$CURRENT_PORT"
LINK="<link rel=\"stylesheet\" href=\"$F/widget.css\">"
EL="<div data-feedd=\"$CURRENT_ID\" data-columns=\"4\" data-limit=\"8\"></div>
<script src=\"$F/widget.js\" async></script>"
page current "" "$LINK
$EL"
page head "$LINK" "$EL"
B="http://127.0.0.1:$BASELINE_PORT"
page baseline "" "<div data-feedd=\"$BASELINE_ID\" data-columns=\"4\" data-limit=\"8\"></div>
<script src=\"$B/widget.js\" async></script>"

node "$HERE/serve.mjs" "$HOST_PORT" "$TMP/site" &
PIDS+=($!)
for _ in $(seq 50); do curl -fs "http://localhost:$HOST_PORT/bakery.css" >/dev/null && break; sleep 0.1; done

export CHROME_PATH=$(command -v chromium)
for run in $(seq "$RUNS"); do
	for preset in desktop mobile; do
		for build in baseline current head; do
			args=(--only-categories=performance,accessibility --output=json --quiet
				--chrome-flags="--headless=new --no-sandbox --disable-gpu"
				--output-path="$REPORTS/$build-$preset-$run.json")
			[ "$preset" = desktop ] && args+=(--preset=desktop)
			echo "run $run/$RUNS: $build, $preset" >&2
			"$LIGHTHOUSE" "http://localhost:$HOST_PORT/$build.html" "${args[@]}"
		done
	done
done
echo
echo "Host page http://localhost:$HOST_PORT (the bakery), feedd demo on 127.0.0.1; baseline $(git rev-parse --short "$BASELINE"), current $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- widget internal/render || echo ' with local changes')."
node "$HERE/summarize.mjs" "$REPORTS"
