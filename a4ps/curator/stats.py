"""The Curator's numbers: judged and golden per persona, and how often the judge agrees with the user.

Why: the judge is calibrated, not trusted blindly. For every rated task that was judged, the judge
"agrees" when its own verdict (overall at or above the threshold of the time) matches the rating
(up = golden-worthy). Read from the files alone, so `a4ps curator stats` needs no backend.
"""

from __future__ import annotations

from typing import Any

from a4ps.config.schema import ANALYST, EMPATH
from a4ps.curator.golden import GoldenSet
from a4ps.curator.ledger import DOWN, UP, CurationLedger

GIVE_UP_AFTER = 3  # failed verdicts on one episode after which the curator stops asking


def curation_stats(ledger: CurationLedger, golden: GoldenSet) -> dict[str, Any]:
    ratings = ledger.ratings()
    held = golden.counts()
    personas: dict[str, dict[str, Any]] = {name: {"judged": 0, "golden": 0, "compared": 0, "agreed": 0}
                                           for name in (ANALYST, EMPATH)}
    for judgement in ledger.judgements():
        row = personas.setdefault(judgement["driver"], {"judged": 0, "golden": 0, "compared": 0, "agreed": 0})
        row["judged"] += 1
        rating = ratings.get(judgement["task_id"])
        if rating is not None:
            row["compared"] += 1
            row["agreed"] += int(bool(judgement["judge_golden"]) == (rating == UP))
    for name, count in held.items():
        personas.setdefault(name, {"judged": 0, "golden": 0, "compared": 0, "agreed": 0})["golden"] = count
    for row in personas.values():
        row["agreement"] = round(row["agreed"] / row["compared"], 3) if row["compared"] else None
    compared = sum(r["compared"] for r in personas.values())
    agreed = sum(r["agreed"] for r in personas.values())
    return {"judged": sum(r["judged"] for r in personas.values()), "golden": sum(held.values()),
            "rated": {UP: sum(1 for r in ratings.values() if r == UP), DOWN: sum(1 for r in ratings.values() if r == DOWN)},
            "agreement": {"compared": compared, "agreed": agreed,
                          "rate": round(agreed / compared, 3) if compared else None},
            "personas": personas, "unjudgeable": ledger.given_up(GIVE_UP_AFTER),
            "torn_lines": ledger.torn_lines + golden.torn_lines}
