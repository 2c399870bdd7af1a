"""Is a new goal only an old one again? Normalised text, then MiniLM embedding similarity.

Why: a Motivator that asks the same model the same kind of question drifts into setting the same
goal over and over; a repeat is refused and ALFRED is asked again (with it listed as already set).
"""

from __future__ import annotations

import logging
import re
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

Embed = Callable[[list[str]], list[list[float]]]

# MiniLM cosine of two phrasings of the same request sits above ~0.9; related but different goals
# (same topic, another question) mostly between 0.5 and 0.85.
REPEAT_SIMILARITY = 0.9


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


class RepeatFilter:
    """Finds the earlier goal a candidate repeats, if any."""

    def __init__(self, embed: Embed | None, threshold: float = REPEAT_SIMILARITY):
        self._embed = embed
        self._threshold = threshold

    def repeated(self, candidate: str, earlier: list[str]) -> str | None:
        if not earlier:
            return None
        key = normalise(candidate)
        for goal in earlier:
            if normalise(goal) == key:
                return goal
        if self._embed is None:
            return None
        try:
            vectors = np.asarray(self._embed([candidate, *earlier]), dtype=np.float32)
        except Exception:  # the embedding model is an aid; the text comparison above still held
            log.exception("goal novelty: embedding failed; compared by text only")
            return None
        norms = np.linalg.norm(vectors, axis=1)
        norms[norms == 0] = 1.0
        cosines = (vectors[1:] @ vectors[0]) / (norms[1:] * norms[0])
        best = int(np.argmax(cosines))
        return earlier[best] if cosines[best] >= self._threshold else None
