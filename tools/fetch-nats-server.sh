#!/usr/bin/env bash
# Makes sure the tests run on a nats-server of at least 2.10, the oldest Novamesh supports
# (nats-server 2.9 exits with a nil pointer panic when a stream is deleted while a message is
# read from it, which tests of deleted streams do on purpose). When the machine's nats-server is
# older (Debian 12 ships 2.9.10), this puts Debian 13's nats-server at .cache/nats-server/nats-server,
# where the test harness (libs/testing) looks first. Nothing is installed system-wide.
# Never fails: without network access the tests run on the machine's server, with a warning.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/usr/local/sbin"

MIN=2.10.0
DEST=.cache/nats-server/nats-server
SUITE=trixie

version_of() { "$1" --version 2>/dev/null | sed -n 's/^nats-server: v\{0,1\}\([0-9][0-9.]*\).*/\1/p'; }
# Compares major.minor.patch as numbers (no `sort -V`: BusyBox lacks it).
new_enough() {
  [ -n "$1" ] && awk -v have="$1" -v min="$MIN" 'BEGIN {
    split(have, h, "."); split(min, m, ".")
    for (i = 1; i <= 3; i++) { if (h[i] + 0 > m[i] + 0) exit 0; if (h[i] + 0 < m[i] + 0) exit 1 }
    exit 0 }'
}

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  fetchable=false
else
  fetchable=true
fi

if [ -x "$DEST" ] && new_enough "$(version_of "$DEST")"; then
  echo "nats-server for tests: $DEST ($(version_of "$DEST"))"
  exit 0
fi
system=$(command -v nats-server || true)
if [ -n "$system" ] && new_enough "$(version_of "$system")"; then
  echo "nats-server for tests: $system ($(version_of "$system"))"
  exit 0
fi

if [ "$fetchable" != true ]; then
  echo "warning: nats-server ${system:+$(version_of "$system") }is older than $MIN or missing, and this is no Debian-like system to fetch one on (apt-get, dpkg-deb); install nats-server $MIN or later, or set NATS_SERVER_BIN" >&2
  exit 0
fi
echo "nats-server ${system:+$(version_of "$system") }is older than $MIN or missing: fetching Debian $SUITE's nats-server into $DEST"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
echo "deb http://deb.debian.org/debian $SUITE main" >"$work/sources.list"
# Only Debian's archive, none of the host's apt configuration or hooks; bounded in time.
apt_opts=(-o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=-" -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache=$work/cache" -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1" -o "Acquire::Retries=0"
  -o "Acquire::http::Timeout=20" -o "APT::Update::Post-Invoke-Success=" -o "APT::Update::Post-Invoke=")
bounded() { if command -v timeout >/dev/null 2>&1; then timeout 120 "$@"; else "$@"; fi; }
if bounded apt-get "${apt_opts[@]}" -qq update >"$work/apt.log" 2>&1 &&
  (cd "$work" && bounded apt-get "${apt_opts[@]}" -qq download nats-server >>"$work/apt.log" 2>&1) &&
  dpkg-deb -x "$work"/nats-server_*.deb "$work/x" &&
  new_enough "$(version_of "$work/x/usr/sbin/nats-server")" &&
  mkdir -p "$(dirname "$DEST")" &&
  # Into place in one step: a test run starting meanwhile sees the old file or the whole new one.
  cp "$work/x/usr/sbin/nats-server" "$DEST.tmp.$$" && mv -f "$DEST.tmp.$$" "$DEST"; then
  echo "nats-server for tests: $DEST ($(version_of "$DEST"))"
else
  rm -f "$DEST.tmp.$$"
  echo "warning: could not fetch a newer nats-server (see below); tests run on ${system:-no nats-server} and may see its crash" >&2
  tail -n 5 "$work/apt.log" >&2
fi
exit 0
