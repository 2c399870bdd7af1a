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

# Stop here, with a clear message, if the backend never answers or dies while starting
# (A4PS_START_TIMEOUT_S, default 120 s: the first start may assemble and load the model).
"$PY" -m a4ps wait-ready --pid "$backend" --timeout "${A4PS_START_TIMEOUT_S:-120}" || exit 1

if [ "$mode" = ui ]; then
    "$PY" -m a4ps ui
else
    "$PY" -m a4ps chat
fi
