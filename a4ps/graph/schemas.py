"""JSON schemas of the short decisions the graph reads. The prose people read streams free; what code
acts on (a tool request, the dissonance verdict) is asked afterwards as a small constrained answer
that continues the same conversation, so the model's cache makes it cheap."""

# ROBIN's verdict on BRICK's analysis, as a category (small models judge categories far more
# reliably than they place a number); the graph maps it to a dissonance value.
VERDICT = {
    "type": "object",
    "properties": {"verdict": {"type": "string", "enum": ["aligned", "minor", "major", "opposed"]}},
    "required": ["verdict"],
    "additionalProperties": False,
}

# For a task whose answer is one number, each voice states the number its own answer reached (read
# from its own answer, still in the model's cache), and the graph compares them itself: equal numbers
# agree, whatever a small model would say about them. ALFRED's, when BRICK's and ROBIN's differ, is
# the third vote.
RESULT = {
    "type": "object",
    "properties": {"result": {"type": "number"}},
    "required": ["result"],
    "additionalProperties": False,
}

# ALFRED's reading of the form the final answer must take; a list of N items is then written under a
# layout grammar that allows exactly N lines.
FORM = {
    "type": "object",
    "properties": {
        "form": {"type": "string", "enum": ["prose", "number", "list", "code"]},
        "items": {"type": "integer", "minimum": 0, "maximum": 12},
        "list_marker": {"type": "string", "enum": ["1.", "-"]},
    },
    "required": ["form", "items", "list_marker"],
    "additionalProperties": False,
}

# For a number: the words of the task that name a range of many whole numbers to go through, quoted.
# A quote is believed only if it is in the task verbatim and holds a number (named_range): measured on
# the quality bench's 50 tasks plus one, 50 right and no false range, where a yes-or-no question said
# yes to 26 of 42 tasks without one and a flag in the form found 2 of 8 ranges.
RANGE = {
    "type": "object",
    "properties": {"range": {"type": "string", "maxLength": 80}},
    "required": ["range"],
    "additionalProperties": False,
}


def named_range(quote: str, task: str) -> bool:
    """The quote names a range of the task: it is the task's own words and holds a number."""
    words = quote.strip().strip(".").lower()
    return bool(words) and words in task.lower() and any(c.isdigit() for c in words)


TOOL_NEED = {
    "type": "object",
    "properties": {
        "needs_tool": {"type": "boolean"},
        "tool_spec": {"type": "string", "maxLength": 300},
    },
    "required": ["needs_tool", "tool_spec"],
    "additionalProperties": False,
}


def tool_need_schema(tool_names: list[str]) -> dict:
    """BRICK's tool decision; with registered tools it may also name one (an enum: only real tools) to call."""
    if not tool_names:
        return TOOL_NEED
    properties = dict(TOOL_NEED["properties"])
    properties["call_tool"] = {"type": "string", "enum": ["", *tool_names]}
    properties["arguments"] = {"type": "object"}
    return {**TOOL_NEED, "properties": properties, "required": [*TOOL_NEED["required"], "call_tool", "arguments"]}
