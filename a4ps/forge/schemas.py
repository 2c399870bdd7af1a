"""Schemas of what BRICK writes for the forge: code starts as a function, tests as a test function
(imports go inside the function, where the AST check still holds them to the allowed modules)."""

TOOL_NAME_PATTERN = "^[a-z][a-z0-9_]{2,39}$"

TOOL = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": TOOL_NAME_PATTERN},
        "docstring": {"type": "string", "minLength": 1, "maxLength": 300},
        "code": {"type": "string", "pattern": "^def ", "minLength": 10, "maxLength": 2500},
        "tests": {"type": "string", "pattern": "^def test_", "minLength": 10, "maxLength": 2000},
    },
    "required": ["name", "docstring", "code", "tests"],
    "additionalProperties": False,
}
