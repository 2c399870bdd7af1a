"""Run the real backend (`python -m a4ps serve`) as a subprocess on free loopback ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from a4ps.client import BackendUnavailable, EventSubscriber, Requester, control_token_path, read_token
from a4ps.config.loader import project_root
from tests.support.config import free_port


class BackendProcess:
    """A backend subprocess with its own data dir, config dir and ports."""

    def __init__(self, data_dir: Path, config_dir: Path, extra_env: dict[str, str] | None = None):
        self.data_dir, self.config_dir = data_dir, config_dir
        self.pub_addr = f"tcp://127.0.0.1:{free_port()}"
        self.rep_addr = f"tcp://127.0.0.1:{free_port()}"
        self.env = {**os.environ, "A4PS_DATA_DIR": str(data_dir), "A4PS_CONFIG_DIR": str(config_dir),
                    "A4PS_PUB_ADDR": self.pub_addr, "A4PS_REP_ADDR": self.rep_addr,
                    "OLLAMA_HOST": f"http://127.0.0.1:{free_port()}", **(extra_env or {})}
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-backend.out"
        self._requester: Requester | None = None

    def start(self, timeout_s: float = 60.0) -> "BackendProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "a4ps", "serve"], cwd=project_root(), env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"backend exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if self.request("ping", timeout_s=1.0)["ok"]:
                    return self
            except BackendUnavailable:
                continue
        raise RuntimeError(f"backend did not answer ping:\n{self.output()}")

    @property
    def token_file(self) -> Path:
        return control_token_path(self.data_dir)

    @property
    def token(self) -> str | None:
        """The control token, as a local client reads it."""
        return read_token(self.token_file)

    def request(self, cmd: str, timeout_s: float = 10.0, **args) -> dict:
        """A command as a local client sends it: with the control token."""
        if self._requester is None:
            self._requester = Requester(self.rep_addr, timeout_s=timeout_s, token_file=self.token_file)
        return self._requester.request(cmd, timeout_s=timeout_s, **args)

    def subscribe(self) -> EventSubscriber:
        """A subscriber whose subscription is live (it has received its join snapshot)."""
        events = EventSubscriber(self.pub_addr)
        assert events.wait_for("state", 10.0) is not None, "no join snapshot"
        return events

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        if self._requester is not None:
            self._requester.close()
            self._requester = None
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL: no chance to save anything."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    def __enter__(self) -> "BackendProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()


def wait_for_task(events: EventSubscriber, task_id: str, statuses: set[str], timeout_s: float,
                  backend: BackendProcess | None = None) -> dict:
    """Collect events until the task reaches one of `statuses`; returns the task event. With `backend`, the
    state is read first: a task that ran at start (restored from the image) may have ended before the
    subscription was live, and its event is then never seen."""
    if backend is not None:
        state = backend.request("get_state")["state"]
        task = next((t for t in state["tasks"] if t["task_id"] == task_id), None)
        if task is not None and task["status"] in statuses:
            return task
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        item = events.poll_event(left)
        if item and item[0] == "task" and item[1].get("task_id") == task_id and item[1]["status"] in statuses:
            return item[1]
    raise TimeoutError(f"task {task_id} did not reach {statuses} in {timeout_s} s")
