#!/usr/bin/env bash
# Installs a Docker engine (docker.io: dockerd, containerd, runc) and gVisor's runsc from Debian apt
# for the docker sandbox backend's tests. Starts nothing: .ci/dockerd.sh runs a private daemon.
set -euo pipefail
"$(dirname "$0")/apt_install.sh" "Docker engine" docker.io runsc
dockerd --version
