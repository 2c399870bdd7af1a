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
# layout grammar that allows exactly N lines. `compute`: the number needs many cases counted or summed,
# which BRICK then does with a program run in the sandbox rather than by hand.
FORM = {
    "type": "object",
    "properties": {
        "form": {"type": "string", "enum": ["prose", "number", "list", "code"]},
        "items": {"type": "integer", "minimum": 0, "maximum": 12},
        "list_marker": {"type": "string", "enum": ["1.", "-"]},
        "compute": {"type": "boolean"},
    },
    "required": ["form", "items", "list_marker", "compute"],
    "additionalProperties": False,
}

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
