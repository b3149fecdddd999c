#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests when it is missing (the tests drive
# it through playwright's Python API with executable_path; playwright's own browser
# download is never used). Safe to run when it is installed.
set -euo pipefail

CHROMIUM=${FLOE_EGRESS_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then exit 0; fi

echo "ensure-browser: installing Debian's chromium package"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends chromium >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y --no-install-recommends chromium >/dev/null
fi
"$CHROMIUM" --version
