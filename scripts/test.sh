#!/usr/bin/env bash
# Runs every test of the project: formatting and vet, the Go tests with the race detector (real embedded
# NATS, real sockets, real rso processes), the TypeScript SDK's tests (which include the check that the
# demos' bundle demos/web/rso-client.js is up to date), and the browser tests of the demos (a real rso and
# Debian's Chromium). CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
	command -v "$1" >/dev/null 2>&1 || { echo "test: $1 is missing: $2" >&2; exit 1; }
}
need go "install Go 1.26 or newer (https://go.dev/dl/) and put it on PATH"
need node "install Node.js 20 or newer (Debian: apt-get install nodejs npm) and put it on PATH"
need npm "install npm (Debian: apt-get install npm) and put it on PATH"

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

echo "== SDK (sdk-ts)"
(cd sdk-ts && npm ci --no-audit --no-fund && npm test)

echo "== browser tests (e2e)"
# The tests drive Debian's Chromium; they never download a browser.
if [ ! -x /usr/bin/chromium ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "test: installing Debian's chromium for the browser tests"
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } ||
			{ echo "test: could not install chromium with apt-get; install Debian's chromium and run again" >&2; exit 1; }
	else
		echo "test: /usr/bin/chromium is missing: install Debian's chromium (sudo apt-get install chromium)" >&2
		exit 1
	fi
fi
(cd e2e && npm ci --no-audit --no-fund && npm test)
