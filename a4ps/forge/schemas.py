"""Schemas of what BRICK writes for the forge: code starts as a function (imports go inside it, where
the AST check still holds them to the allowed modules); tests are a short list of assert expressions,
each of which becomes one test function (checks.tests_from_asserts).

The bounds keep an answer small enough for a small model to get right and for the grammar to close:
one function of a few dozen lines and two to four asserts. A list with maxItems is a hard stop (a
model on a roll cannot enumerate asserts until the token budget runs out, as one did in free text)."""

TOOL_NAME_PATTERN = "^[a-z][a-z0-9_]{2,39}$"
MAX_DOCSTRING, MAX_CODE, MAX_ASSERT, MAX_DIAGNOSIS = 160, 1200, 160, 300
MIN_ASSERTS, MAX_ASSERTS = 2, 4

TOOL = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": TOOL_NAME_PATTERN},
        "docstring": {"type": "string", "minLength": 1, "maxLength": MAX_DOCSTRING},
        "code": {"type": "string", "pattern": "^def ", "minLength": 10, "maxLength": MAX_CODE},
        "tests": {"type": "array", "items": {"type": "string", "minLength": 3, "maxLength": MAX_ASSERT},
                  "minItems": MIN_ASSERTS, "maxItems": MAX_ASSERTS},
    },
    "required": ["name", "docstring", "code", "tests"],
    "additionalProperties": False,
}

# A retry first says what was wrong (a few words of reasoning help a small model decide whether the
# function or its own test's expected value is at fault), then which of the two it judges wrong, then
# the whole corrected tool. The verdict is read by the forge: a check the model judged wrong and sent
# back unchanged, with unchanged code, is dropped rather than failed a third time.
FUNCTION_WRONG, CHECKS_WRONG = "the function was wrong", "the expected values were wrong"
TOOL_REVISION = {
    "type": "object",
    "properties": {
        "diagnosis": {"type": "string", "minLength": 1, "maxLength": MAX_DIAGNOSIS},
        "verdict": {"type": "string", "enum": [FUNCTION_WRONG, CHECKS_WRONG]},
        **TOOL["properties"],
    },
    "required": ["diagnosis", "verdict", *TOOL["required"]],
    "additionalProperties": False,
}


def string_list(field: str, max_items: int, max_chars: int) -> dict:
    """An object with one field: a list of 1..max_items strings of at most max_chars (code as JSON
    lines, checks as expressions)."""
    return {
        "type": "object",
        "properties": {field: {"type": "array", "minItems": 1, "maxItems": max_items,
                               "items": {"type": "string", "maxLength": max_chars}}},
        "required": [field],
        "additionalProperties": False,
    }
