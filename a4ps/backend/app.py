"""The backend: the one composition root. Builds every organ from settings and runs the threads."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from a4ps.adapters.requests import register as register_adapters
from a4ps.autonomy.curiosity import CuriosityTrial, ToolMissing
from a4ps.autonomy.goals import GoalWriter
from a4ps.autonomy.ledger import AutonomyLedger
from a4ps.autonomy.motivator import Motivator
from a4ps.autonomy.novelty import RepeatFilter
from a4ps.backend.commands import CommandTable
from a4ps.backend.compose import (build_adapters, build_checkpointer, build_curator, build_finetune, build_forge,
                                  build_memory, build_models)
from a4ps.backend.guard import CommandGuard, ensure_control_token
from a4ps.backend.server import ZmqServer
from a4ps.backend.supervisor import Supervisor
from a4ps.backend.tasks import CANCELLED, CURIOSITY, DONE, FAILED, INQUIRY, RUNNING, Task, TaskQueue
from a4ps.cadence.codex_file import CodexFile
from a4ps.cadence.gate import CodexGate
from a4ps.cadence.history import LegislativeRecord
from a4ps.cadence.inquiry import Cadence, InquiryFailed
from a4ps.cadence.preview import ImpactPreview
from a4ps.cadence.proposals import PENDING, ProposalStore
from a4ps.client import control_token_path
from a4ps.config import Codex, Settings
from a4ps.config.loader import codex_path
from a4ps.curator.requests import register as register_curator
from a4ps.errors import CodedError
from a4ps.events import EventBus
from a4ps.events.bus import BusLogHandler
from a4ps.finetune.requests import register as register_finetune
from a4ps.graph import SocraticGraph, TaskCancelled
from a4ps.graph.voice import Voices
from a4ps.models import ModelError
from a4ps.protos import ImageSaveError, LivingImage, ProtoManager

log = logging.getLogger(__name__)

IMAGE_FORMAT = 2  # 2: protos stored as live edits over a codex version (1: whole Proto objects)
PROPOSAL_PENDING = "a codex proposal awaits your decision"
# loops that call the model: joined first, in this order
MODEL_LOOPS = ("task-worker", "motivator", "curator", "adapters")


class InquiryRefused(CodedError):
    """An inquiry cannot be queued now; `code` says why (a proposal or an inquiry is pending)."""


class Backend:
    """Owns the organs, the task queue, the supervised loops and the ZeroMQ server."""

    def __init__(self, settings: Settings, codex: Codex):
        self.settings, self.codex = settings, codex
        self.data_dir = Path(settings.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.bus = EventBus()
        self._log_handler = BusLogHandler(self.bus)
        self.image = LivingImage(self.data_dir / "image", self.data_dir / "image.key", settings.image.keep_checkpoints)
        self._stop = threading.Event()
        self._cancel_current = threading.Event()  # set to stop the running task at its next token
        self._stop_reason = ""
        self.supervisor = Supervisor(self._stop)
        self._model_warm = False
        self._save_lock = threading.Lock()
        self.started_at = time.time()
        self.run_id = uuid.uuid4().hex[:16]  # this process: event seq restarts with each run_id

        self.models = build_models(settings, codex)
        log.info("model provider: %s (%s)", self.models.provider_name, self.models.reason)

        state, _ = self.image.load_latest()
        state = state if state and state.get("format") in (1, IMAGE_FORMAT) else None
        self.protos = ProtoManager.for_models(codex, self.models, (state or {}).get("protos"))
        self.tasks = TaskQueue(settings.backend.recent_tasks, max_attempts=settings.backend.max_task_attempts)
        if state:
            self.tasks.restore(state.get("tasks", []))
        self.codex_file = CodexFile(codex_path(), self.data_dir / "codex_history")
        self.proposals = ProposalStore(self.data_dir / "proposals")
        self.proposals.restore((state or {}).get("proposal"))  # the image's copy of a pending one
        self.record = LegislativeRecord(self.data_dir / "cadence" / "record.json")
        self._next_codex: Codex | None = None  # an approved codex, adopted by the worker between tasks
        self._codex_lock = threading.Lock()

        self.voices = Voices(self.models, self.protos, self.bus, settings.models.max_tokens,
                             settings.models.repeat_penalty)
        self.forge = build_forge(settings, codex, self.models, self.protos, self.bus)
        self.memory = build_memory(settings, self.models)
        self.checkpoints = build_checkpointer(settings)
        self.motivator = Motivator(settings.autonomy, AutonomyLedger(self.data_dir / "autonomy.json"), self.tasks,
                                   self.bus, GoalWriter(self.voices, codex, RepeatFilter(self.models.embed),
                                                        self.goal_context),
                                   self._stop, request_inquiry=self._self_inquiry)
        self.curiosity = CuriosityTrial(self.voices, codex, self.forge)
        self.cadence = Cadence(settings, self.codex_file, self.proposals, self.record, self.voices,
                               ImpactPreview(settings, self.models, self.voices), self.bus, self._performance,
                               on_pending=lambda _: self._proposal_pending(True))
        self.gate = CodexGate(self.proposals, self.codex_file, self.bus, on_codex=self._codex_approved,
                              on_decided=lambda: self._proposal_pending(False))
        if self.proposals.pending() is not None:
            self.motivator.hold(PROPOSAL_PENDING)
        self.curator = build_curator(settings, codex, self.models, self.protos, self.voices, self.memory, self.tasks,
                                     self.bus, self._stop)
        self.adapters = build_adapters(settings, codex, self.models, self.protos, self.voices, self.tasks, self.bus,
                                       self._stop, (state or {}).get("adapters"), self.save_image_or_warn)
        self.finetune = build_finetune(settings, codex, self.models, self.tasks, self.bus, self._stop)
        self.graph = SocraticGraph(self.voices, codex, settings.graph, self.bus, workshop=self.forge,
                                   recall=self.recall_for_plan, checkpointer=self.checkpoints)
        guard = CommandGuard(ensure_control_token(self.data_dir), control_token_path(self.data_dir))
        self.commands = CommandTable(self, guard)
        register_curator(self.commands, self.curator)
        register_adapters(self.commands, self.adapters)
        register_finetune(self.commands, self.finetune)
        self.server = ZmqServer(settings.zmq.pub_addr, settings.zmq.rep_addr, settings.zmq.max_request_bytes,
                                self.commands, snapshot=self.snapshot, allow_remote=settings.zmq.allow_remote)

    # --- state ----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        running = self.tasks.running
        return {
            "run_id": self.run_id,
            "provider": self.models.provider_name,
            "provider_reason": self.models.reason,
            "protos": self.protos.snapshot(),
            "tasks": self.tasks.snapshot(),
            "current_task": running.task_id if running else None,
            "tools": [tool.as_map() for tool in self.forge.registry.all()],
            "autonomy": self.motivator.snapshot(),
            "proposal": self._pending_map(),
            "codex_version": self.codex.version,
            "curator": self.curator.snapshot(),
            "adapters": self.adapters.snapshot(),
            "finetune": self.finetune.snapshot(),
            "loops": self.supervisor.health(),
            "image": {"path": str(self.image.last_path) if self.image.last_path else None,
                      "saved_at": self.image.last_saved_at},
        }

    def _pending_map(self) -> dict[str, Any] | None:
        pending = self.proposals.pending()
        return pending.public() if pending is not None else None

    def publish_snapshot(self) -> None:
        """A `state` event, built in its turn on the event stream (see a4ps/backend/server.py)."""
        self.server.publish_snapshot()

    def snapshot_with_seq(self) -> tuple[dict[str, Any], int]:
        """The snapshot and the newest event seq it reflects (read first, so it is reflected)."""
        seq = self.server.published_seq()
        return self.snapshot(), seq

    def image_state(self) -> dict[str, Any]:
        return {"format": IMAGE_FORMAT, "saved_at": time.time(), "codex_version": self.codex.version,
                "protos": self.protos.export(), "tasks": self.tasks.export(),
                "autonomy": self.motivator.snapshot(), "proposal": self._pending_map(),
                "adapters": self.adapters.export()}

    def save_image(self, why: str) -> Path:
        """Raises ImageSaveError (an OSError) with a message that says where and why."""
        with self._save_lock:
            path = self.image.save(self.image_state())
        log.debug("living image saved (%s): %s", why, path.name)
        return path

    def save_image_or_warn(self, why: str) -> str | None:
        """For saves the caller can live without: None when saved, else the logged reason."""
        try:
            self.save_image(why)
        except ImageSaveError as exc:
            log.error("%s (after: %s)", exc, why)
            return str(exc)
        return None

    def ping(self) -> dict[str, Any]:
        return {"pong": True, "time": time.time(), "provider": self.models.provider_name, "pid": os.getpid(),
                "run_id": self.run_id, "loops": self.supervisor.health()}

    # --- tasks ----------------------------------------------------------------------------------
    def submit(self, text: str, source: str) -> tuple[Task, int, str | None]:
        """Queue a task; the third value is a warning when the queue could not be saved."""
        task, position = self.tasks.submit(text, source)
        return task, position, self.save_image_or_warn("task submitted")

    def cancel(self, task_id: str) -> str | None:
        task = self.tasks.find(task_id)
        if task is None:
            return None
        if self.tasks.cancel_pending(task_id) is not None:
            self.save_image_or_warn("task cancelled")
            return CANCELLED
        if self.tasks.running is task:
            task.error = "cancelled by the user"
            self._cancel_current.set()
            log.info("task %s: stop asked while it runs", task_id)
            return "cancelling"
        return task.status

    # --- autonomy and the codex -------------------------------------------------------------------
    def goal_context(self) -> dict[str, str]:
        """What ALFRED builds a goal on: recent episodes (H-MEM), the tools, recent dissonance."""
        try:
            episodes = self.memory.recent_episodes(limit=5)
            recent = "\n".join(f"- {e.task_text[:160]}: {e.summary[:200]}" for e in episodes)
        except Exception:  # memory is an aid; the task list still says what was done
            log.exception("motivator: recent episodes could not be read; using the task list")
            recent = ""
        finished = [t for t in self.tasks.snapshot() if t["status"] == DONE][-5:]
        if not recent:
            recent = "\n".join(f"- {t['text'][:160]}: {(t['result'] or '')[:200]}" for t in finished)
        tools = ", ".join(f"{t['signature']}" for t in self.forge.usable_tools()) or "(none yet)"
        dissonance = "; ".join(f"'{t['text'][:60]}': {', '.join(f'{v:.2f}' for v in t['dissonance'])}"
                               for t in finished if t["dissonance"]) or "(none measured)"
        return {"recent": recent or "(nothing yet)", "tools": tools, "dissonance": dissonance}

    def _performance(self) -> tuple[list[dict[str, Any]], list[str]]:
        broken = sorted(t.name for t in self.forge.registry.all() if t.status != "ok")
        return self.protos.snapshot(), broken

    def request_inquiry(self, topic: str, trigger: str) -> Task:
        """Queue an inquiry into the codex (a person's request runs as theirs; a self-set one waits, with
        source `motivator` when it is a goal the Motivator set, else `cadence`)."""
        if self.proposals.pending() is not None:
            raise InquiryRefused("proposal_pending", "a codex proposal already awaits a decision (get_proposal)")
        running = self.tasks.running
        if any(t.kind == INQUIRY for t in self.tasks.waiting()) or (running and running.kind == INQUIRY):
            raise InquiryRefused("inquiry_pending", "an inquiry is already queued or running")
        text = "Inquiry into the codex" + (f": {topic}" if topic else "")
        details = {"topic": topic, "trigger": trigger}
        if trigger == "user":
            task, _ = self.tasks.submit(text, "user", kind=INQUIRY, details=details)
        else:
            source = "motivator" if trigger == "motivator" else "cadence"
            task = self.tasks.submit_self_set(text, source, kind=INQUIRY, details=details)
            if task is None:
                raise InquiryRefused("inquiry_pending", "a self-set task is already waiting")
        self.save_image_or_warn("inquiry queued")
        return task

    def _self_inquiry(self, topic: str, trigger: str) -> Task | None:
        """The Motivator's request: the queued task, or None (logged) when it is refused."""
        try:
            return self.request_inquiry(topic, trigger)
        except InquiryRefused as exc:
            log.info("no inquiry (%s): %s", trigger, exc)
            return None

    def _proposal_pending(self, pending: bool) -> None:
        """Autonomy waits while a proposal does; the image takes in (or drops) its copy at once."""
        self.motivator.hold(PROPOSAL_PENDING if pending else None)
        self.save_image_or_warn("proposal published" if pending else "proposal decided")

    def _codex_approved(self, codex: Codex) -> None:
        """A new codex version was written; the worker adopts it before its next task."""
        with self._codex_lock:
            self._next_codex = codex

    def _adopt_pending_codex(self) -> None:
        with self._codex_lock:
            codex, self._next_codex = self._next_codex, None
        if codex is None:
            return
        self.codex.adopt(codex)
        self.protos.adopt_codex(self.codex)
        log.info("codex version %d adopted: personas reloaded", codex.version)
        self.save_image_or_warn("codex adopted")
        self.publish_snapshot()

    def recall_for_plan(self, task_text: str) -> str:
        """The memories ALFRED plans with: the most relevant chunks of earlier tasks."""
        hits = self.memory.recall(task_text, k=4)
        return "\n".join(f"- earlier task '{h.task_text[:80]}': {h.persona or 'ALFRED'} said: {h.text[:240]}"
                         for h in hits) or "(none)"

    def _remember(self, task: Task, final: dict[str, Any]) -> None:
        """Every finished task goes into long-term memory; a memory failure never fails the task."""
        try:
            dialogue = [d for d in final.get("dialogue", []) if d.get("node") != "alfred_plan"]
            dialogue.append({"persona": "ALFRED", "node": "alfred_synthesize", "turn": final.get("turn", 0),
                             "text": final.get("answer", "")})
            self.memory.remember_task(task.task_id, task.text, final.get("answer", ""), final.get("plan", ""), dialogue)
        except Exception:
            log.exception("task %s could not be stored in memory", task.task_id)

    def _publish_task(self, task: Task) -> None:
        self.bus.publish("task", **task.as_map())

    def _run_task(self, task: Task) -> None:
        try:  # a task whose progress cannot be saved is not started
            self.save_image("task started")
        except ImageSaveError as exc:
            raise ImageSaveError(f"task not run: {exc}") from exc
        log.info("task %s started: %s", task.task_id, task.text[:80])
        try:
            if task.kind == INQUIRY:
                proposal = self.cadence.inquire(task.task_id, str(task.details.get("topic") or ""),
                                                str(task.details.get("trigger") or "user"), self._cancel_current)
                decision = "awaiting your decision" if proposal.status == PENDING else proposal.status
                self.tasks.finish(task, DONE, result=f"proposal {proposal.proposal_id}: {proposal.change['target']} "
                                                     f"({proposal.change['operation']}); {decision}")
                return
            text = task.text
            if task.kind == CURIOSITY:
                text = self.curiosity.prepare(task.task_id, str(task.details.get("tool") or ""), self._cancel_current)
            final = self.graph.run(task.task_id, text, cancel=self._cancel_current)
        except TaskCancelled:
            if self._stop.is_set() and task.error != "cancelled by the user":
                log.info("task %s interrupted by shutdown; re-queued (it resumes at its last step)", task.task_id)
                self.tasks.requeue(task)
            else:
                log.info("task %s: stopped", task.task_id)
                self._forget_progress(task)
                self.tasks.finish(task, CANCELLED, error="cancelled by the user")
            return
        except (ModelError, ToolMissing, InquiryFailed) as exc:
            log.error("task %s failed: %s", task.task_id, exc)
            self._forget_progress(task)
            self.tasks.finish(task, FAILED, error=str(exc))
            return
        except Exception as exc:  # the worker survives anything a task does
            log.exception("task %s failed unexpectedly", task.task_id)
            self._forget_progress(task)
            self.tasks.finish(task, FAILED, error=f"{type(exc).__name__}: {exc}")
            return
        task.turns, task.dissonance = final.get("turn", 0), list(final.get("dissonance", []))
        self.protos.record_task(self.protos.names())
        self._remember(task, final)
        self.record.add(task, final)
        self._forget_progress(task)
        self.tasks.finish(task, DONE, result=final.get("answer", ""))
        log.info("task %s done in %d turn(s)", task.task_id, task.turns)

    def _forget_progress(self, task: Task) -> None:
        """A task that ended has no progress to resume; a failure to drop it only costs disk."""
        try:
            self.graph.forget(task.task_id)
        except Exception:
            log.exception("could not drop the saved progress of task %s", task.task_id)

    def _work_step(self) -> None:
        """One turn of the task-worker loop: take a task and run it. What escapes fails the task
        (never leaves it `running`) and then goes to the supervisor, which logs it and goes on."""
        self._cancel_current.clear()
        self._adopt_pending_codex()
        self.adapters.apply_pending()  # swaps happen here, between tasks, never during one
        if not self._model_warm:
            self._warm_model()
        task = self.tasks.take(timeout=0.5)
        if task is None:
            return
        self._adopt_pending_codex()  # an approval that came while this step waited applies to this task
        self.adapters.apply_pending()  # so does a swap
        if self._stop.is_set():  # taken just as shutdown began: leave it for the next start
            self.tasks.requeue(task)
            return
        try:
            self._run_task(task)
        except Exception as exc:
            if task.status == RUNNING:
                self.tasks.finish(task, FAILED, error=str(exc) or type(exc).__name__)
            raise
        finally:
            self.save_image_or_warn("task finished")

    def _warm_model(self) -> None:
        """Before the first task the model reads the society's shared system message once, so the
        first answer streams after reading only the task (a failure here only costs that speed)."""
        self._model_warm = True
        started = time.perf_counter()
        try:
            self.graph.warm()
        except Exception as exc:  # the first task will load the model and report any real problem
            log.warning("model warm-up failed (%s); the first task will load the model", exc)
            return
        log.info("model ready: shared prompt read in %.1f s", time.perf_counter() - started)

    def _revalidate_tools(self) -> None:
        """Tools from earlier runs are offered again only after their tests pass in the sandbox."""
        tools = self.forge.registry.all()
        if not tools:
            return
        log.info("re-validating %d tool(s) in the sandbox", len(tools))
        statuses = self.forge.revalidate_all()
        broken = sorted(name for name, status in statuses.items() if status != "ok")
        log.info("tools re-validated: %d ok, %d broken%s", len(statuses) - len(broken), len(broken),
                 f" ({', '.join(broken)})" if broken else "")
        self.publish_snapshot()

    def _autosave_step(self) -> None:
        if not self._stop.wait(self.settings.image.autosave_interval_s):
            self.save_image("periodic")

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        logging.getLogger().addHandler(self._log_handler)
        self.protos.set_listener(lambda proto: self.bus.publish("proto", proto=proto.as_map()))
        self.tasks.set_listener(self._publish_task)
        self.bus.subscribe("*", self.server.publish)
        for tool in self.forge.registry.load():
            if tool.status == "ok":
                self.forge.registry.set_status(tool.name, "validating", tool.validation)
        self.server.start()
        self.save_image("start")
        self.supervisor.run("task-worker", self._work_step)
        self.supervisor.run("tool-revalidation", self._revalidate_tools, once=True)
        self.supervisor.run("autosave", self._autosave_step)
        self.bus.subscribe("task", self.motivator.on_event)
        self.bus.subscribe("tool_created", self.motivator.on_event)
        self.bus.subscribe("high_cognitive_dissonance", self.motivator.on_event)
        self.supervisor.run("motivator", self.motivator.step)
        self.bus.subscribe("task", self.curator.on_event)
        self.supervisor.run("curator", self.curator.step)
        self.bus.subscribe("task", self.adapters.on_event)
        self.supervisor.run("adapters", self.adapters.step)
        self.supervisor.run("finetune", self.finetune.step)
        log.info("backend ready (pid %d, provider %s, data dir %s)", os.getpid(), self.models.provider_name,
                 self.data_dir)

    def request_stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self._stop_reason = reason
            log.info("stopping: %s", reason)
            self._stop.set()
            self.motivator.interrupt()
            self.curator.interrupt()
            self.adapters.interrupt()
            self.finetune.interrupt()
            self.tasks.wake()

    def wait(self) -> None:
        while not self._stop.wait(0.5):
            pass

    def shutdown(self) -> None:
        """Stop in the order documented in a4ps/backend/supervisor.py (and docs/protocol.md)."""
        self.request_stop(self._stop_reason or "shutdown")
        grace = self.settings.backend.shutdown_grace_s
        deadline = time.monotonic() + grace
        while self.tasks.running is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        self._cancel_current.set()
        still_running = self.supervisor.join(first=MODEL_LOOPS)
        if self.save_image_or_warn("shutdown") is None:
            log.info("living image saved; backend stopped")
        if not set(MODEL_LOOPS) & set(still_running):  # never free the model under a generation
            self.models.unload()
        self.memory.close()
        self.checkpoints.conn.close()
        logging.getLogger().removeHandler(self._log_handler)
        self.server.stop()
