"""JSON schemas of every persona answer the graph reads. The first property is the one people read.

Strings carry maxLength so that a rambling small model is made to close its JSON (the grammar
bounds the string) instead of running out of tokens mid-string."""

PLAN = {
    "type": "object",
    "properties": {"plan": {"type": "string", "minLength": 1, "maxLength": 600}},
    "required": ["plan"],
    "additionalProperties": False,
}

THESIS = {
    "type": "object",
    "properties": {
        "analysis": {"type": "string", "minLength": 1, "maxLength": 900},
        "needs_tool": {"type": "boolean"},
        "tool_spec": {"type": "string", "maxLength": 400},
    },
    "required": ["analysis", "needs_tool", "tool_spec"],
    "additionalProperties": False,
}

ANTITHESIS = {
    "type": "object",
    "properties": {
        "response": {"type": "string", "minLength": 1, "maxLength": 700},
        "dissonance": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["response", "dissonance"],
    "additionalProperties": False,
}

SYNTHESIS = {
    "type": "object",
    "properties": {"answer": {"type": "string", "minLength": 1, "maxLength": 1200}},
    "required": ["answer"],
    "additionalProperties": False,
}

# Which field of each answer is streamed to people as tokens.
SHOWN_FIELD = {"alfred_plan": "plan", "brick": "analysis", "robin": "response", "alfred_synthesize": "answer"}


def thesis_schema(tool_names: list[str]) -> dict:
    """BRICK's schema; with registered tools it may also name one (an enum: only real tools) to call."""
    if not tool_names:
        return THESIS
    properties = dict(THESIS["properties"])
    properties["call_tool"] = {"type": "string", "enum": ["", *tool_names]}
    properties["arguments"] = {"type": "object"}
    return {**THESIS, "properties": properties, "required": [*THESIS["required"], "call_tool", "arguments"]}
