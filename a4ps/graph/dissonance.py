"""ROBIN's dissonance: her verdict on BRICK's analysis, combined with how far her reply drifts from it.

A small model's own score is poorly calibrated (it calls almost anything "in agreement"), so two
signals are combined: the categorical verdict she gives in a constrained answer, and the embedding
distance between BRICK's analysis and her reply (an off-topic reply is far from it whatever she
says). Either signal alone can raise the value; agreement needs both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

VERDICT_VALUES = {"aligned": 0.1, "minor": 0.35, "major": 0.7, "opposed": 0.95}

# MiniLM cosine between two texts on the same question sits around 0.45-0.85; between unrelated ones
# around 0.0-0.2. Below LOW the reply counts as fully off-topic, above HIGH as fully on-topic.
LOW_SIMILARITY, HIGH_SIMILARITY = 0.2, 0.5

Embed = Callable[[list[str]], list[list[float]]]


@dataclass(frozen=True)
class Dissonance:
    value: float
    verdict: str
    verdict_value: float
    similarity: float | None  # None when no embedding was available

    def as_map(self) -> dict:
        return {"value": self.value, "verdict": self.verdict, "verdict_value": self.verdict_value,
                "similarity": self.similarity}


def similarity(embed: Embed, first: str, second: str) -> float:
    vectors = np.asarray(embed([first, second]), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1)
    if not norms.all():
        return 0.0
    return float(vectors[0] @ vectors[1] / (norms[0] * norms[1]))


def off_topic(cosine: float) -> float:
    """0 for a reply on BRICK's topic, 1 for one about something else, linear in between."""
    return float(np.clip((HIGH_SIMILARITY - cosine) / (HIGH_SIMILARITY - LOW_SIMILARITY), 0.0, 1.0))


def measure(verdict: str, analysis: str, reply: str, embed: Embed | None, embedding_weight: float) -> Dissonance:
    """The combined dissonance in [0, 1]; without an embedder it is the verdict alone (logged once per call)."""
    verdict_value = VERDICT_VALUES[verdict]
    if embed is None or embedding_weight <= 0:
        return Dissonance(verdict_value, verdict, verdict_value, None)
    try:
        cosine = similarity(embed, analysis, reply)
    except Exception:  # the embedding model is an aid; the verdict still stands
        log.exception("dissonance: embedding failed; using ROBIN's verdict alone")
        return Dissonance(verdict_value, verdict, verdict_value, None)
    value = (1 - embedding_weight) * verdict_value + embedding_weight * off_topic(cosine)
    return Dissonance(round(float(value), 3), verdict, verdict_value, round(cosine, 3))
