#!/usr/bin/env bash
# Installs the named Debian packages that are not installed yet (idempotent, quiet when nothing
# is missing). Usage: .ci/apt_install.sh WHAT PACKAGE...
set -euo pipefail
what=$1
shift
missing=()
for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "$what already installed: $*"
    exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "$what installed: ${missing[*]}"
