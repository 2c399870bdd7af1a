"""What a codex amendment may change, and applying one: validated, and never against `consent`.

Why: a proposal is model-written. Its target is one of the fields listed here (the schema's enum,
checked again in code), its value must give a codex that validates, and the principle `consent`
(the codex changes only with the user's approval) can never be removed or weakened: a hard rule
here, whatever the model, the prompt or the schema say.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from a4ps.config.schema import Codex, Prompts

CONSENT = "consent"
PERSONA_FIELDS = {"system_prompt": str, "role": str, "temperature": float, "top_p": float, "max_tokens": int}
NEW_PRINCIPLE = "principle.new"
REMOVE_SUFFIX = ".remove"
SET, ADD, REMOVE = "set", "add", "remove"
MAX_VALUE_CHARS = 4000
SHOWN_CHARS = 160
# The proposal's JSON must close within the steward's answer length (his codex max_tokens, 400 by
# default, at roughly 3-4 characters a token): the free-text fields are bounded to fit together.
VALUE_CHARS, REASON_CHARS = 600, 200


class AmendmentError(ValueError):
    """The proposed change cannot be made (unknown target, invalid value, `consent` touched)."""


@dataclass(frozen=True)
class Change:
    """One amendment. The target alone says what happens (a small model chose a contradictory
    separate operation too often): a field is set, `principle.<id>.remove` removes that principle,
    `principle.new` adds one named `principle_id`."""

    target: str
    value: str
    principle_id: str = ""

    @property
    def operation(self) -> str:
        if self.target == NEW_PRINCIPLE:
            return ADD
        return REMOVE if self.target.startswith("principle.") and self.target.endswith(REMOVE_SUFFIX) else SET

    def as_map(self) -> dict[str, str]:
        return {"target": self.target, "operation": self.operation, "value": self.value,
                "principle_id": self.principle_id}

    @classmethod
    def from_map(cls, data: dict[str, Any]) -> "Change":
        return cls(str(data["target"]), str(data.get("value") or ""), str(data.get("principle_id") or ""))


def targets(codex: Codex) -> list[str]:
    """Every field a proposal may name."""
    names = [f"persona.{p.name}.{field}" for p in codex.persona for field in PERSONA_FIELDS]
    names += [f"prompts.{key}" for key in Prompts.model_fields]
    names += [f"principle.{p.id}" for p in codex.principle]
    names += [f"principle.{p.id}{REMOVE_SUFFIX}" for p in codex.principle]
    return [*names, NEW_PRINCIPLE]


def proposal_schema(codex: Codex) -> dict[str, Any]:
    """The JSON ALFRED answers with; the enum keeps the target to real fields."""
    text = {"type": "string", "minLength": 8, "maxLength": REASON_CHARS}
    return {
        "type": "object",
        "properties": {
            "target": {"type": "string", "enum": targets(codex)},
            "value": {"type": "string", "maxLength": VALUE_CHARS},
            "principle_id": {"type": "string", "maxLength": 40},
            "justification": text,
            "expected_consequences": text,
        },
        "required": ["target", "value", "principle_id", "justification", "expected_consequences"],
        "additionalProperties": False,
    }


def current_values(codex: Codex) -> str:
    """The fields with their current values, shortened, for ALFRED's prompt."""
    data = codex.model_dump()
    lines = []
    for target in targets(codex):
        if target == NEW_PRINCIPLE:
            lines.append(f"{NEW_PRINCIPLE}: (add a principle: value is its text, principle_id its id)")
            continue
        if target.endswith(REMOVE_SUFFIX):
            lines.append(f"{target}: (remove this principle)")
            continue
        value = _read(data, target)
        shown = " ".join(str(value).split())
        lines.append(f"{target} = {shown[:SHOWN_CHARS]}{'…' if len(shown) > SHOWN_CHARS else ''}")
    return "\n".join(lines)


def _read(data: dict[str, Any], target: str) -> Any:
    kind, _, rest = target.partition(".")
    if kind == "persona":
        name, _, field = rest.rpartition(".")
        return next(p for p in data["persona"] if p["name"] == name)[field]
    if kind == "prompts":
        return data["prompts"][rest]
    return next(p for p in data["principle"] if p["id"] == rest)["text"]


def _typed(value: str, kind: type, target: str) -> Any:
    if kind is str:
        return value
    try:
        return kind(value.strip())
    except ValueError:
        raise AmendmentError(f"{target} needs {'an integer' if kind is int else 'a number'}, not {value!r}") from None


def apply(codex: Codex, change: Change) -> Codex:
    """The codex with `change` made (same version number), validated; raises AmendmentError."""
    if change.target not in targets(codex):
        raise AmendmentError(f"there is no codex field {change.target!r}")
    if len(change.value) > MAX_VALUE_CHARS:
        raise AmendmentError(f"the new value is over {MAX_VALUE_CHARS} characters")
    data = codex.model_dump()
    kind, _, rest = change.target.partition(".")
    if change.target == NEW_PRINCIPLE:
        pid = change.principle_id.strip()
        if not re.fullmatch(r"[a-z][a-z0-9_]{1,39}", pid):
            raise AmendmentError("a new principle needs a principle_id of lowercase letters, digits or _")
        if any(p["id"] == pid for p in data["principle"]):
            raise AmendmentError(f"a principle {pid!r} exists already; edit it with target principle.{pid}")
        data["principle"].append({"id": pid, "text": change.value.strip()})
    elif kind == "principle":
        pid = rest[:-len(REMOVE_SUFFIX)] if change.operation == REMOVE else rest
        index = next(i for i, p in enumerate(data["principle"]) if p["id"] == pid)
        if change.operation == REMOVE:
            del data["principle"][index]
        else:
            data["principle"][index]["text"] = change.value.strip()
    else:
        if kind == "persona":
            name, _, field = rest.rpartition(".")
            persona = next(p for p in data["persona"] if p["name"] == name)
            persona[field] = _typed(change.value, PERSONA_FIELDS[field], change.target)
        else:
            _same_fields(data["prompts"][rest], change.value, change.target)
            data["prompts"][rest] = change.value
    try:
        amended = Codex.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise AmendmentError(f"the amended codex is invalid at {where}: {err['msg']}") from None
    if amended.model_dump() == codex.model_dump():
        raise AmendmentError(f"the change leaves {change.target} as it is")
    guard_consent(codex, amended)
    return amended


def _fields(template: str, target: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as exc:
        raise AmendmentError(f"{target} is not a valid template ({exc}); write literal braces as {{{{ }}}}") from None


def _same_fields(old: str, new: str, target: str) -> None:
    """A prompt template is filled by code: the new one must use exactly the {fields} the old one did."""
    before, after = _fields(old, target), _fields(new, target)
    if before != after:
        missing, extra = sorted(before - after), sorted(after - before)
        raise AmendmentError(f"{target} must keep the template fields {sorted(before)}"
                             + (f"; missing {missing}" if missing else "") + (f"; unknown {extra}" if extra else ""))


def guard_consent(before: Codex, after: Codex) -> None:
    """The hard rule: while the codex holds `consent`, no change may remove it or alter its text."""
    old = next((p for p in before.principle if p.id == CONSENT), None)
    if old is None:
        return
    new = next((p for p in after.principle if p.id == CONSENT), None)
    if new is None:
        raise AmendmentError("the principle 'consent' can never be removed")
    if new.text.strip() != old.text.strip():
        raise AmendmentError("the principle 'consent' can never be weakened or reworded")
