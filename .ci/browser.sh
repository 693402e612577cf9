#!/usr/bin/env bash
# Debian's chromium and chromedriver for the web console's browser tests (tests/console/
# test_browser.py). Idempotent: installs only what is missing. Without root or apt-get it says
# so and leaves the tests to skip, except under CI, where a missing browser is an error.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: the console's browser tests need Debian's chromium and chromium-driver" \
       "(as root: apt-get install -y chromium chromium-driver); without them they are skipped" >&2
  if [ -n "${CI:-}" ]; then exit 1; fi
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "installing chromium and chromium-driver for the browser tests" >&2
apt-get update -qq
apt-get install -y -qq chromium chromium-driver >/dev/null
