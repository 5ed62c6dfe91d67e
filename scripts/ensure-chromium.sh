#!/usr/bin/env bash
# Make sure Debian's chromium is installed for the browser tests (Playwright drives it via
# executable_path; no browser is ever downloaded by Playwright).  Installs with apt-get as
# root; otherwise warns, and the browser tests skip saying why.
set -uo pipefail
CHROMIUM="${SAFEHAVEN_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: installing chromium with apt-get" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >&2 \
    || { echo "ensure-chromium: apt-get install failed" >&2; exit 1; }
  [ -x "$CHROMIUM" ] && exit 0
fi
echo "ensure-chromium: no chromium at $CHROMIUM and cannot install one (not root)" >&2
exit 1
