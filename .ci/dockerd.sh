#!/usr/bin/env bash
# A private Docker engine for the docker sandbox backend's tests: no systemd, no registry, and no
# trace on the host. Installs nothing (see install_docker.sh).
#   .ci/dockerd.sh start   start dockerd (+ its containerd) with the gVisor runtime `runsc`; wait until
#                          `docker info` answers; print the export line for DOCKER_HOST
#   .ci/dockerd.sh env     print `export DOCKER_HOST=...` for the daemon of this state dir
#   .ci/dockerd.sh stop    SIGTERM the daemon by its PID, wait, then make sure nothing of it is left
#                          (processes, mounts, cgroups: what it has to kill or undo is reported); fails
#                          when something cannot be cleaned up or the host's network state changed
# State (socket, data, pidfile, log) lives in $A4PS_DOCKERD_DIR, default $RUNNER_TEMP/a4ps-dockerd or
# /tmp/a4ps-dockerd; `stop` deletes it.
#
# Why the flags: without --iptables=false --ip-forward=false --bridge=none dockerd creates docker0,
# iptables rules (FORWARD DROP) and sets ip_forward=1, all of which outlive it. runsc needs
# runtimeArgs --network=none with this gVisor on these kernels (gVisor #10704: it misdetects the
# root network namespace and every container fails to start); the sandbox uses no network anyway.
# --oci-seccomp makes gVisor enforce the container's seccomp profile (the sandbox's own, as with the
# runsc backend; without it runsc ignores the profile); ptrace is this runsc's platform (kvm hangs).
set -euo pipefail

S="${A4PS_DOCKERD_DIR:-${RUNNER_TEMP:-/tmp}/a4ps-dockerd}"
SOCK="unix://$S/docker.sock"
CGROUP_PARENT=a4ps-dockerd     # containers' cgroups go under this name, so stop can remove them
START_TIMEOUT_S=60
STOP_TIMEOUT_S=30

log() { echo "dockerd.sh: $*" >&2; }

daemon_pid() {
    local pid
    pid=$(cat "$S/dockerd.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# PIDs of processes whose command line mentions the state dir: containerd, its shims, runsc's
# sandbox and gofer. Matched by our unique path, never by a program name.
state_dir_pids() {
    # The pattern comes on stdin so that grep's own command line does not match it.
    # shellcheck disable=SC2062  # the glob names the files, it is not the pattern
    printf '%s/\n' "$S" | grep -laF -f - /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 || true
}

cmd_env() { echo "export DOCKER_HOST=$SOCK"; }

cmd_start() {
    if pid=$(daemon_pid); then
        log "already running (pid $pid, $S)"
        cmd_env
        return 0
    fi
    for bin in dockerd containerd runsc docker; do
        command -v "$bin" >/dev/null || { log "$bin not found: run .ci/install_docker.sh"; return 1; }
    done
    mkdir -p "$S"
    chmod 711 "$S"
    cat /proc/sys/net/ipv4/ip_forward >"$S/ip_forward.before"
    cat >"$S/daemon.json" <<EOF
{
  "runtimes": {"runsc": {"path": "$(command -v runsc)", "runtimeArgs": ["--network=none", "--oci-seccomp", "--platform=ptrace"]}},
  "cgroup-parent": "$CGROUP_PARENT"
}
EOF
    local started
    started=$(date +%s.%N)
    # setsid: its own session, so a Ctrl-C in the caller's terminal does not half-stop it.
    setsid dockerd --config-file "$S/daemon.json" --host "$SOCK" --data-root "$S/data" \
        --exec-root "$S/exec" --pidfile "$S/docker.pid" --iptables=false --ip-forward=false \
        --ip-masq=false --bridge=none --storage-driver overlay2 </dev/null >"$S/dockerd.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$S/dockerd.pid"
    local deadline=$((SECONDS + START_TIMEOUT_S))
    until DOCKER_HOST="$SOCK" docker info >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "dockerd exited during start-up; last lines of $S/dockerd.log:"
            tail -n 20 "$S/dockerd.log" >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "dockerd did not answer within ${START_TIMEOUT_S}s; stopping it"
            tail -n 20 "$S/dockerd.log" >&2
            cmd_stop || true
            return 1
        fi
        sleep 0.2
    done
    local runtimes
    runtimes=$(DOCKER_HOST="$SOCK" docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}')
    case " $runtimes " in
        *" runsc "*) ;;
        *) log "daemon has no runsc runtime (has: $runtimes)"; cmd_stop || true; return 1 ;;
    esac
    log "dockerd pid $pid ready in $(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $started}")s (runtimes: $runtimes; state $S)"
    cmd_env
}

cmd_stop() {
    local problems=0 pid
    if pid=$(daemon_pid); then
        kill -TERM "$pid"
        local deadline=$((SECONDS + STOP_TIMEOUT_S))
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "dockerd (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT_S}s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            problems=1
        fi
    fi
    # containerd, shims and runsc normally exit with dockerd (give them a moment); kill what stays.
    local leftovers=""
    for _ in $(seq 1 30); do
        leftovers=$(state_dir_pids)
        [ -z "$leftovers" ] && break
        sleep 0.1
    done
    if [ -n "$leftovers" ]; then
        # e.g. containerd's shim of a container whose start failed outlives even its removal
        log "warning: processes the daemon left behind, killing them:"
        for pid in $leftovers; do ps -o pid=,args= -p "$pid" | cut -c1-200 >&2 || true; done
        # shellcheck disable=SC2086  # one PID per word
        kill -KILL $leftovers 2>/dev/null || true
        sleep 0.2
        leftovers=$(state_dir_pids)
        if [ -n "$leftovers" ]; then
            log "still running after SIGKILL: ${leftovers//$'\n'/ }"
            problems=1
        fi
    fi
    if [ -d "$S" ]; then
        # Mounts (overlay layers, netns, shm) the daemon did not undo; deepest first.
        local mounts
        mounts=$(awk -v s="$S/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo | sort -r)
        if [ -n "$mounts" ]; then
            log "warning: unmounting what the daemon left mounted: ${mounts//$'\n'/ }"
            for m in $mounts; do umount -l "$m" 2>/dev/null || { log "cannot unmount $m"; problems=1; }; done
        fi
    fi
    # The containers' cgroups (one dir per hierarchy; empty once their processes are gone).
    # They sit at any depth: cgroup v1 nests them under dockerd's own cgroup in some hierarchies.
    local dir
    while IFS= read -r dir; do
        find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || { log "could not remove cgroup $dir"; problems=1; }
    done < <(find /sys/fs/cgroup -type d -name "$CGROUP_PARENT" -prune 2>/dev/null)
    if ip link show docker0 >/dev/null 2>&1; then
        log "docker0 exists: some dockerd (not necessarily this one) created it"
        problems=1
    fi
    if command -v iptables >/dev/null && iptables -S 2>/dev/null | grep -q DOCKER; then
        log "iptables has DOCKER rules: some dockerd (not necessarily this one) created them"
        problems=1
    fi
    if [ -f "$S/ip_forward.before" ] && [ "$(cat /proc/sys/net/ipv4/ip_forward)" != "$(cat "$S/ip_forward.before")" ]; then
        log "net.ipv4.ip_forward changed while the daemon ran"
        problems=1
    fi
    # Only what start created: A4PS_DOCKERD_DIR may point anywhere.
    rm -rf "$S/data" "$S/exec"
    rm -f "$S/daemon.json" "$S/docker.sock" "$S/docker.pid" "$S/dockerd.pid" "$S/dockerd.log" "$S/ip_forward.before"
    [ ! -d "$S" ] || rmdir "$S" 2>/dev/null || log "left $S in place: it holds files this script did not make"
    [ "$problems" -eq 0 ] && log "stopped; nothing left behind"
    return "$problems"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    env) cmd_env ;;
    *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
