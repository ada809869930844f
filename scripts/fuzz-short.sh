#!/bin/sh
# Runs every fuzz target of feedd briefly (FUZZTIME, default 5s each) on top
# of its seed corpus in the package's testdata/fuzz. Any finding fails the
# run; the failing input is written to testdata/fuzz/<Target>/ for a repro
# with: go test -run=<Target>/<file> ./<package>
set -eu
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-5s}"
# Every Fuzz function of the tree, found by name so a new one is never left out.
targets=$(grep -rlE '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' --include='*_test.go' internal cmd 2>/dev/null |
	while read -r file; do
		for t in $(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(f \*testing\.F\).*/\1/p' "$file"); do
			echo "./$(dirname "$file") $t"
		done
	done | sort)
echo "$targets" | while read -r pkg target; do
	[ -n "$pkg" ] || continue
	echo "== $pkg $target ($FUZZTIME)"
	go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg"
done
echo "fuzz-short: all targets passed"
