#!/usr/bin/env bash
# Installs the sandbox runtimes (gVisor runsc, bubblewrap) from Debian apt.
# Idempotent: when every package is already installed it exits without touching apt.
set -euo pipefail

PACKAGES=(runsc bubblewrap)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "sandbox runtimes already installed: ${PACKAGES[*]}"
else
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Verify (and report) what the sandbox will use; read whole outputs so no pipe is cut short.
runsc_version="$(runsc --version)"
echo "${runsc_version%%$'\n'*}"
bwrap --version
