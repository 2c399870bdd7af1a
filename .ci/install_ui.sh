#!/usr/bin/env bash
# Installs the system libraries the Kivy UI needs on a fresh Debian: GL/EGL and Mesa's drivers
# for SDL's window (also the offscreen driver used by the tests), mtdev for Kivy's input
# providers, xclip for the clipboard. Idempotent (see apt_install.sh).
set -euo pipefail
"$(dirname "$0")/apt_install.sh" "UI libraries" libgl1 libegl1 libgl1-mesa-dri libmtdev1 xclip
