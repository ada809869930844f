#!/usr/bin/env bash
# Image bytes of a 12-post grid in Chromium with AVIF and WebP stored beside
# the JPEGs, against the JPEGs alone (see main.go for what it does).
#
#   scripts/formats/run.sh                  # photos: see below
#   PHOTOS=dir scripts/formats/run.sh       # your own photographs (>= 1080 px)
#   BINARY=bin/feedd scripts/formats/run.sh # a binary built elsewhere
#
# The default photos are real photographs already on this machine:
# internal/media/testdata/photo-1080.jpg and, when the Go module cache
# holds SeaweedFS's source, its weed/images/sample1.jpg (2592×1936). Needs
# chromium on PATH.
set -euo pipefail
cd "$(dirname "$0")/../.."

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

if [ -z "${PHOTOS:-}" ]; then
	PHOTOS=$TMP/photos
	mkdir -p "$PHOTOS"
	cp internal/media/testdata/photo-1080.jpg "$PHOTOS/"
	for f in "$(go env GOMODCACHE)"/github.com/seaweedfs/seaweedfs@*/weed/images/sample1.jpg; do
		[ -f "$f" ] && cp "$f" "$PHOTOS/sample1.jpg" && break
	done
fi
if [ -z "${BINARY:-}" ]; then
	CGO_ENABLED=0 go build -trimpath -o "$TMP/feedd" ./cmd/feedd
	BINARY=$TMP/feedd
fi
go run ./scripts/formats -feedd "$BINARY" -photos "$PHOTOS" "$@"
