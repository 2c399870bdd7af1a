#!/usr/bin/env bash
# BAT OS launcher.
#   ./run.sh              set up if needed, start the backend, wait for it, open the window;
#                         closing the window stops the backend gracefully
#   ./run.sh --headless   the same without the window: the backend plus the terminal client
#   ./run.sh test         set up (including the sandbox runtimes) and run the test suite
set -euo pipefail
cd "$(dirname "$0")"

scripts/setup.sh
PY=.venv/bin/python

if [ "${1:-}" = "test" ]; then
    shift
    exec "$PY" -m pytest "$@"
fi

mode=ui
[ "${1:-}" = "--headless" ] && mode=headless

"$PY" -m a4ps serve &
backend=$!
stop_backend() {
    if kill -0 "$backend" 2>/dev/null; then
        kill -TERM "$backend"
        wait "$backend" || true
    fi
}
trap stop_backend EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 120); do
    if "$PY" -c 'import sys; from a4ps.client import Requester; from a4ps.config import load_settings
r = Requester(load_settings().zmq.rep_addr, timeout_s=0.5)
try:
    sys.exit(0 if r.request("ping").get("ok") else 1)
except Exception:
    sys.exit(1)' 2>/dev/null; then
        break
    fi
    kill -0 "$backend" 2>/dev/null || { echo "run.sh: the backend exited during start-up" >&2; exit 1; }
    sleep 0.5
done

if [ "$mode" = ui ]; then
    "$PY" -m a4ps ui
else
    "$PY" -m a4ps chat
fi
