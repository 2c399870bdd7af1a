"""The Curator, the first half of the strategic loop: judged dialogues become golden samples.

Why: the society should learn from its own best work, and only from that. Every
`autopoiesis.curate_interval_s` (or at once on `curate`) the loop takes the remembered episodes not
yet judged (H-MEM's `recent_episodes`), ALFRED judges each (a4ps/curator/judge.py), and one at or
above `autopoiesis.curation_threshold` becomes a golden sample for the persona that drove it
(a4ps/curator/golden.py). The user's rating overrides the judge both ways: up is always golden,
down never (a down-rating of a golden episode removes its line: the dataset must not teach what the
user rejected; the judgement stays, for the agreement figures).

Courtesy: a pass judges only while no task runs or waits; a person's task queued mid-verdict cancels
that verdict, and the episode is judged again once the task is done. An episode whose verdict stays
invalid `GIVE_UP_AFTER` passes running is no longer asked about (counted as unjudgeable). Each pass
ends with a `curated` event; each rating with a `task_rated` event.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Callable

from a4ps.backend.tasks import DONE, QUEUED, USER
from a4ps.config.schema import Autopoiesis, Codex
from a4ps.curator.golden import GoldenSet, chat_sample
from a4ps.curator.judge import EpisodeJudge, Verdict, turns_of
from a4ps.curator.ledger import RATINGS, SHOWN_RATINGS, UP, DOWN, CurationLedger
from a4ps.curator.stats import GIVE_UP_AFTER, curation_stats
from a4ps.errors import CodedError
from a4ps.events import Event, EventBus
from a4ps.graph.voice import TaskCancelled
from a4ps.memory.records import Episode
from a4ps.models import ModelError

log = logging.getLogger(__name__)

SCAN_EPISODES = 200  # the newest episodes a pass looks at for unjudged ones
STEP_WAIT_S = 1.0
IDLE_POLL_S = 0.5
JUDGED, GOLDEN, FAILED, STOPPED = "judged", "golden", "failed", "stopped"


class RatingError(CodedError):
    """A rating that cannot be taken; `code` goes into the error reply."""


def wanted_golden(judgement: dict[str, Any], rating: str | None) -> bool:
    """The rule: the user's rating wins; unrated, the judge's verdict of the time decides."""
    if rating == UP:
        return True
    if rating == DOWN:
        return False
    return bool(judgement["judge_golden"])


class Curator:
    """Runs curation passes, takes ratings, reports; see the module docstring."""

    def __init__(self, config: Autopoiesis, codex: Codex, ledger: CurationLedger, golden: GoldenSet,
                 judge: EpisodeJudge, episodes: Callable[[int], list[Episode]],
                 task_status: Callable[[str], str | None], idle: Callable[[], bool], bus: EventBus,
                 stop: threading.Event, clock: Callable[[], float] = time.time):
        self._config, self._codex, self._ledger, self._golden, self._judge = config, codex, ledger, golden, judge
        self._episodes, self._task_status, self._idle, self._bus = episodes, task_status, idle, bus
        self._stop, self._clock = stop, clock
        self._lock = threading.RLock()      # a verdict settled and a rating taken never interleave
        self._state = threading.Lock()      # the requested and the running pass
        self._wake = threading.Event()
        self._cancel = threading.Event()    # set: drop the verdict being written (a person's task, shutdown)
        self._requested: str | None = None
        self._running: str | None = None
        self._started = clock()
        self._reconcile()

    def _reconcile(self) -> None:
        """Make the golden files agree with judgements and ratings (a crash between the two writes)."""
        with self._lock:
            for judgement in self._ledger.judgements():
                self._apply(judgement, self._ledger.rating(judgement["task_id"]))

    # --- the loop ---------------------------------------------------------------------------------
    def next_due(self) -> float | None:
        if not self._config.enabled:
            return None
        last = (self._ledger.last_run or {}).get("finished_at")
        return (last if isinstance(last, (int, float)) else self._started) + self._config.curate_interval_s

    def request_pass(self) -> str:
        """`curate`: a pass as soon as no task runs or waits; its `curated` event carries this id."""
        with self._state:
            if self._requested is None:
                self._requested = uuid.uuid4().hex[:12]
            pass_id = self._requested
        self._wake.set()
        return pass_id

    def step(self) -> None:
        """One look: run a pass if one was asked for or is due, and the society is idle."""
        self._wake.wait(STEP_WAIT_S)
        self._wake.clear()
        if self._stop.is_set():
            return
        with self._state:
            requested = self._requested
        due = self.next_due()
        if requested is None and (due is None or self._clock() < due):
            return
        if not self._idle():
            return
        with self._state:
            pass_id, self._requested = self._requested or uuid.uuid4().hex[:12], None
            self._running = pass_id
        try:
            self.run_pass(pass_id, "request" if requested else "interval")
        finally:
            with self._state:
                self._running = None

    def interrupt(self) -> None:
        """Shutdown: drop the verdict being written; the step then returns at once."""
        self._cancel.set()
        self._wake.set()

    def on_event(self, event: Event) -> None:
        payload = event.payload
        if event.topic == "task" and payload.get("status") == QUEUED and payload.get("priority", USER) == USER:
            self._cancel.set()  # a person's task: the model is theirs

    # --- a pass -----------------------------------------------------------------------------------
    def run_pass(self, pass_id: str, trigger: str) -> dict[str, Any]:
        started = self._clock()
        counts = {JUDGED: 0, GOLDEN: 0, FAILED: 0}
        errors: list[str] = []
        try:
            episodes = self._episodes(SCAN_EPISODES)
        except Exception as exc:  # memory is read again next pass; the loop lives on
            log.exception("curator: the episodes could not be read")
            episodes, errors = [], [f"memory: {type(exc).__name__}: {exc}"]
        todo = [e for e in reversed(episodes)  # oldest first
                if not self._ledger.judged(e.id) and self._ledger.failures(e.id) < GIVE_UP_AFTER]
        todo = todo[:self._config.episodes_per_pass]
        stopped = False
        for number, episode in enumerate(todo, 1):
            outcome, error = self._judge_one(episode, number)
            if outcome == STOPPED:
                stopped = True
                break
            counts[JUDGED] += outcome in (JUDGED, GOLDEN)
            counts[GOLDEN] += outcome == GOLDEN
            counts[FAILED] += outcome == FAILED
            if error:
                errors.append(error)
        summary = {"pass_id": pass_id, "trigger": trigger, "started_at": started, "finished_at": self._clock(),
                   "judged": counts[JUDGED], "golden": counts[GOLDEN], "failed": counts[FAILED],
                   "left": len(todo) - counts[JUDGED] - counts[FAILED], "stopped": stopped, "errors": errors[:5]}
        try:
            self._ledger.finish_pass(summary)
        except OSError as exc:
            log.error("curator: the pass record could not be saved: %s", exc)
        log.info("curator: pass %s (%s): %d judged, %d golden, %d failed%s", pass_id, trigger, counts[JUDGED],
                 counts[GOLDEN], counts[FAILED], "; stopped by shutdown" if stopped else "")
        totals = self.stats()
        self._bus.publish("curated", **summary, total_judged=totals["judged"], total_golden=totals["golden"])
        return summary

    def _wait_idle(self) -> bool:
        while not self._idle():
            if self._stop.wait(IDLE_POLL_S):
                return False
        return not self._stop.is_set()

    def _judge_one(self, episode: Episode, number: int) -> tuple[str, str]:
        while True:
            if not self._wait_idle():
                return STOPPED, ""
            self._cancel.clear()
            if not self._idle():
                continue
            try:
                verdict = self._judge.judge(episode, self._cancel, turn=number)
            except TaskCancelled:
                if self._stop.is_set():
                    return STOPPED, ""
                log.info("curator: a person's task came first; episode %s is judged after it", episode.id)
                continue
            except ModelError as exc:
                tries = self._ledger.failed(episode.id)
                log.warning("curator: no verdict on episode %s (task %s), attempt %d of %d: %s", episode.id,
                            episode.task_id, tries, GIVE_UP_AFTER, exc)
                return FAILED, f"episode {episode.id}: {exc}"
            return (GOLDEN if self._settle(episode, verdict) else JUDGED), ""

    def _settle(self, episode: Episode, verdict: Verdict) -> bool:
        """Record the verdict and make the golden set follow it (and any rating); True when golden."""
        turns = turns_of(episode, verdict.driver)
        sample = None
        if turns:
            system = self._codex.persona_named(verdict.driver).system_prompt
            sample = chat_sample(system, episode.task_text, "\n\n".join(t.text.strip() for t in turns))
        judgement = {"episode_id": episode.id, "task_id": episode.task_id, "judged_at": self._clock(),
                     "scores": verdict.scores, "driver": verdict.driver, "why": verdict.why,
                     "judge_model": verdict.judge_model, "codex_version": self._codex.version,
                     "threshold": self._config.curation_threshold,
                     "judge_golden": verdict.scores["overall"] >= self._config.curation_threshold, "sample": sample}
        with self._lock:
            golden = self._apply(judgement, self._ledger.rating(episode.task_id))
            self._ledger.record(judgement)
        return golden

    def _apply(self, judgement: dict[str, Any], rating: str | None) -> bool:
        """Add or remove the episode's golden line as the rule says; True when it is golden now."""
        if wanted_golden(judgement, rating) and judgement.get("sample"):
            reason = ("rated up by the user" if rating == UP
                      else f"judged {judgement['scores']['overall']} >= threshold {judgement['threshold']}")
            provenance = {"task_id": judgement["task_id"], "episode_id": judgement["episode_id"],
                          "scores": judgement["scores"], "driver_why": judgement["why"],
                          "judge_model": judgement["judge_model"], "codex_version": judgement["codex_version"],
                          "judged_at": judgement["judged_at"], "added_at": self._clock(), "reason": reason}
            self._golden.add(judgement["driver"], judgement["sample"], provenance)
            return True
        self._golden.remove(judgement["episode_id"])
        return False

    # --- ratings ----------------------------------------------------------------------------------
    def rate(self, task_id: str, rating: str) -> dict[str, Any]:
        """The user's thumbs: kept, and applied at once to a judged episode (later to one not yet judged)."""
        if rating not in RATINGS:
            raise RatingError("invalid_value", f"rating must be 'up' or 'down', not {rating!r}")
        with self._lock:
            judgements = self._ledger.judgements(task_id)
            if not judgements:
                status = self._task_status(task_id)
                if status is None:
                    raise RatingError("not_found", f"no task {task_id!r}")
                if status != DONE:
                    raise RatingError("not_rateable", f"task {task_id} is {status}: only a task that finished "
                                                      "with an answer (done) can be rated")
            try:
                self._ledger.rate(task_id, rating)
            except OSError as exc:
                raise RatingError("not_saved", f"the rating could not be saved: {exc}") from None
            changes = []
            try:
                for judgement in judgements:
                    before = self._golden.holder(judgement["episode_id"]) is not None
                    after = self._apply(judgement, rating)
                    if before != after:
                        changes.append("added" if after else "removed")
            except OSError as exc:  # the rating is on disk: the next start makes the golden file follow it
                raise RatingError("not_saved", f"the rating is kept, but the golden set could not be changed "
                                               f"yet ({exc}); it follows at the next start") from None
            golden = any(self._golden.holder(j["episode_id"]) for j in judgements)
        result = {"task_id": task_id, "rating": rating, "judged": bool(judgements), "golden": golden,
                  "change": changes[0] if changes else None}
        log.info("curator: task %s rated %s%s", task_id, rating, f" (golden line {changes[0]})" if changes else "")
        self._bus.publish("task_rated", **result)
        return result

    # --- what clients see -------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return curation_stats(self._ledger, self._golden)

    def snapshot(self) -> dict[str, Any]:
        with self._state:
            running, requested = self._running, self._requested
        stats = self.stats()
        return {"enabled": self._config.enabled, "interval_s": self._config.curate_interval_s,
                "threshold": self._config.curation_threshold, "running": running, "requested": requested,
                "next_due_at": self.next_due(), "last_run": self._ledger.last_run,
                "judged": stats["judged"], "golden": stats["golden"], "agreement": stats["agreement"],
                "personas": stats["personas"], "ratings": self._ledger.ratings(newest=SHOWN_RATINGS)}
