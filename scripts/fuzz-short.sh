#!/bin/sh
# Runs every fuzz target of feedd briefly (FUZZTIME, default 5s each) on top
# of its seed corpus in the package's testdata/fuzz. Any finding fails the
# run; the failing input is written to testdata/fuzz/<Target>/ for a repro
# with: go test -run=<Target>/<file> ./<package>
set -eu
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-5s}"
targets="
./internal/graph FuzzDecodeResponses
./internal/connection FuzzParseSignedRequest
./internal/connection FuzzSignedRequestVerify
./internal/feed FuzzParseQuery
./internal/feed FuzzCursor
./internal/media FuzzProcess
./internal/config FuzzLoad
"
echo "$targets" | while read -r pkg target; do
	[ -n "$pkg" ] || continue
	echo "== $pkg $target ($FUZZTIME)"
	go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg"
done
echo "fuzz-short: all targets passed"
