#!/usr/bin/env bash
# What the tests need besides the Python packages: headless Chromium (Debian's `chromium` package)
# for tests/test_browser.py and scripts/browser_check.py. Idempotent: does nothing when Chromium is
# installed. Installing needs root and apt-get; without them it says what to install and exits 0
# (the browser tests then skip), except in CI ($CI set), where it fails.
set -euo pipefail

if [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "headless Chromium is missing: install Debian's chromium package (apt-get install chromium)" \
         "to run the browser tests; they skip without it." >&2
    [ -z "${CI:-}" ] || exit 1
    exit 0
fi
echo "Installing Debian's chromium package for the browser tests ..."
start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
echo "chromium installed in $(( $(date +%s) - start )) s: $(chromium --version 2>/dev/null || true)"
