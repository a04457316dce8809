#!/usr/bin/env bash
# Install what the dashboard's browser test needs beyond the dev extra (which brings selenium
# and plotly): Debian's chromium and chromium-driver. Needs root (CI runs as root); does
# nothing when both are already there. Selenium is given both paths, so it never downloads
# a driver.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "the browser test needs chromium and chromedriver: run as root," \
        "or: sudo apt-get install chromium chromium-driver" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium chromium-driver >/dev/null
