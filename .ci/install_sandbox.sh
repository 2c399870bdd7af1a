#!/usr/bin/env bash
# Installs the sandbox runtimes (gVisor runsc, bubblewrap) from Debian apt, then reports their versions.
set -euo pipefail
"$(dirname "$0")/apt_install.sh" "sandbox runtimes" runsc bubblewrap
# Read whole outputs so no pipe is cut short under pipefail.
runsc_version="$(runsc --version)"
echo "${runsc_version%%$'\n'*}"
bwrap --version
