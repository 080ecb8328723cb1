#!/usr/bin/env bash
# Runs every test of the project: formatting and vet, then the Go tests with the race detector (real
# embedded NATS, real sockets, real rso processes). CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
	command -v "$1" >/dev/null 2>&1 || { echo "test: $1 is missing: $2" >&2; exit 1; }
}
need go "install Go 1.26 or newer (https://go.dev/dl/) and put it on PATH"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './node_modules/*'))
if [ -n "$unformatted" ]; then
	echo "test: gofmt would change these files (run gofmt -w):" >&2
	echo "$unformatted" >&2
	exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 15m ./...
