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
new_enough() { [ -n "$1" ] && [ "$(printf '%s\n%s\n' "$MIN" "$1" | sort -V | head -n1)" = "$MIN" ]; }

if [ -x "$DEST" ] && new_enough "$(version_of "$DEST")"; then
  echo "nats-server for tests: $DEST ($(version_of "$DEST"))"
  exit 0
fi
system=$(command -v nats-server || true)
if [ -n "$system" ] && new_enough "$(version_of "$system")"; then
  echo "nats-server for tests: $system ($(version_of "$system"))"
  exit 0
fi

echo "nats-server ${system:+$(version_of "$system") }is older than $MIN or missing: fetching Debian $SUITE's nats-server into $DEST"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
echo "deb http://deb.debian.org/debian $SUITE main" >"$work/sources.list"
apt_opts=(-o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=-" -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache=$work/cache" -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
if apt-get "${apt_opts[@]}" -qq update >"$work/apt.log" 2>&1 &&
  (cd "$work" && apt-get "${apt_opts[@]}" -qq download nats-server >>"$work/apt.log" 2>&1) &&
  dpkg-deb -x "$work"/nats-server_*.deb "$work/x" &&
  new_enough "$(version_of "$work/x/usr/sbin/nats-server")"; then
  mkdir -p "$(dirname "$DEST")"
  cp "$work/x/usr/sbin/nats-server" "$DEST"
  echo "nats-server for tests: $DEST ($(version_of "$DEST"))"
else
  echo "warning: could not fetch a newer nats-server (see below); tests run on ${system:-no nats-server} and may see its crash" >&2
  tail -n 5 "$work/apt.log" >&2
fi
exit 0
