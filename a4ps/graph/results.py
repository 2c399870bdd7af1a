"""The numbers of a task whose answer is one number: each round's results, compared in code, and the
vote when BRICK and ROBIN disagree and ALFRED has worked the task out on his own.

Why a vote: measured on the quality bench, a revision written after reading the other's answer lost
more right answers than it found (a small model anchors on what it reads). Three answers reached
independently, where two agree, are right far more often than either of the two that disagreed.
"""

from __future__ import annotations

import math

from a4ps.config.schema import ANALYST, EMPATH, STEWARD
from a4ps.config.templates import shown

VOICES = ("brick", "robin", "alfred")  # the keys of a results entry, in the order they are told
NAMES = {"brick": ANALYST, "robin": EMPATH, "alfred": STEWARD}


def same_number(first: float, second: float) -> bool:
    return math.isclose(first, second, rel_tol=1e-6, abs_tol=1e-9)


def majority(entry: dict) -> float | None:
    """The number at least two of the entry's independent results share, else None."""
    values = [entry[k] for k in VOICES if k in entry]
    for i, value in enumerate(values):
        if sum(1 for other in values[i + 1:] if same_number(value, other)) >= 1:
            return value
    return None


def computed(results: list[dict]) -> bool:
    """BRICK's number in the last round came from his program (it stands: see a4ps.graph.socratic)."""
    return bool(results) and bool(results[-1].get("computed"))


def disputed(results: list[dict], turn: int) -> bool:
    """This round's two results differ and no vote has been taken yet in this task."""
    if not results or results[-1]["turn"] != turn or any("alfred" in r for r in results):
        return False
    return not same_number(results[-1]["brick"], results[-1]["robin"])


def decided(results: list[dict]) -> float | None:
    """The vote's result, once ALFRED's own working made two of three agree (else None)."""
    if results and "alfred" in results[-1]:
        return majority(results[-1])
    return None


def settled(results: list[dict]) -> float | None:
    """The task's number once the society has one: BRICK's program computed it, the vote gave it a
    majority, or BRICK and ROBIN reached it on their own in the last round; else None."""
    if not results:
        return None
    last = results[-1]
    if last.get("computed"):
        return last["brick"]
    if "alfred" in last:
        return majority(last)
    return last["brick"] if same_number(last["brick"], last["robin"]) else None


def results_text(results: list[dict]) -> str:
    """The last round's numbers, told to the next speaker (empty unless the task asks for a number)."""
    names = NAMES
    if not results:
        return ""
    last = results[-1]
    told = {k: shown(last[k]) for k in VOICES if k in last}
    if last.get("computed"):
        also = ("reached the same by hand" if same_number(last["brick"], last["robin"])
                else f"reached {told['robin']} by hand, which is less reliable for this task")
        return (f"\n{names['brick']} computed {told['brick']} with a program run in the sandbox, going through "
                f"every case; {names['robin']} {also}. {told['brick']} is the result.")
    if "alfred" not in last:
        if same_number(last["brick"], last["robin"]):
            return f"\n{names['brick']} and {names['robin']} reached the same result: {told['brick']}."
        return (f"\n{names['brick']}'s result: {told['brick']}; {names['robin']}'s result: {told['robin']}."
                " They disagree: check which one is right.")
    each = ", ".join(f"{names[k]} {told[k]}" for k in VOICES)
    winner = majority(last)
    if winner is None:
        return f"\nWorked out independently: {each}. All three differ: check which one holds up."
    return f"\nWorked out independently: {each}. Two of the three reached {shown(winner)}: that is the result."
