#!/usr/bin/env bash
# Runs redkit's whole test suite on a Debian/Ubuntu machine.
#
# Installs what the tests need from the distribution's packages when it is
# missing (redis-server first, then redis-sentinel for the Sentinel topology;
# chromium and its driver for the dashboard's
# browser test), then runs every test of the workspace. Tests start their own
# redis-server and chromedriver processes on free ports; nothing needs to be
# running beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "error: '$*' needs root; run as root or install sudo" >&2
        exit 1
    fi
}

apt_updated=0
need_package() { # need_package <command> <package>
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "==> installing $2 (provides $1)"
        if [ "$apt_updated" -eq 0 ]; then
            as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
            apt_updated=1
        fi
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    fi
}

need_package redis-server redis-server
need_package redis-cli redis-tools
need_package redis-sentinel redis-sentinel
need_package chromium chromium
need_package chromedriver chromium-driver

echo "==> redis-server: $(redis-server --version)"
echo "==> chromium: $(chromium --version 2>/dev/null || echo unknown)"
echo "==> cargo test --workspace"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
