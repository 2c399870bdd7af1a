"""Schema-constrained JSON: validation, a grammar for llama.cpp, and streaming one field for display.

The model is always asked for JSON matching a schema; code reads only the validated object.
`FieldStreamer` decodes the growing JSON text so that the human-readable field can be shown token
by token while it is generated; it never decides anything.
"""

from __future__ import annotations

import json
import re
from typing import Any

import functools

import jsonschema

from a4ps.models.types import StructuredOutputError

# A JSON string character without raw control characters (strict JSON forbids them; the stock rule allows them).
_CHAR_RULE = r'''[^"\\\x00-\x1F\x7F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'''
# Between JSON tokens: nothing, one space, or a line break and an indent, as a model lays JSON out by
# itself. llama-cpp-python's converter allows one space only, which masks every token that joins the end
# of a string to a line break ('")",\n'): measured on Qwen2.5-Coder, code as JSON lines then broke off
# mid-string ("print('Fiz", "return Tr"); with this rule the same prompts gave whole lines. Bounded (one
# break, 20 spaces), so it cannot run away.
_SPACE_RULE = '| " " | "\\n" [ ]{0,20}'
_UNIT_INTERVAL_RULE = '("0" ("." [0-9] [0-9]? [0-9]?)? | "1" ("." "0" "0"? "0"?)?) space'


def validate(data: Any, schema: dict) -> dict:
    """Return `data` if it is an object matching `schema`, else raise StructuredOutputError."""
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise StructuredOutputError(f"answer invalid at {path}: {exc.message}") from None
    if not isinstance(data, dict):
        raise StructuredOutputError("answer is not a JSON object")
    return data


def parse_and_validate(text: str, schema: dict) -> dict:
    """Decode the model's JSON text and validate it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StructuredOutputError(f"answer is not valid JSON: {exc.msg} at char {exc.pos}") from None
    return validate(data, schema)


@functools.cache
def _converter_class() -> type:
    """The converter subclass, built on first use: importing llama_cpp loads libllama, which an
    Ollama-only process never needs."""
    from llama_cpp import llama_grammar

    class _BoundedSchemaConverter(llama_grammar.SchemaConverter):
        """Tighter grammar than llama.cpp's converter: numbers in [0, 1], small int ranges, string
        lengths as one bounded repetition (the stock converter nests maxLength into a huge rule), and
        strings whose pattern only fixes a literal start ("^def ")."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._rules["space"] = _SPACE_RULE

        def visit(self, schema, name):  # noqa: D102 - same contract as the parent
            kind = schema.get("type") if isinstance(schema, dict) else None
            rule_name = name or "root"
            if kind == "number" and schema.get("minimum", -1) >= 0 and schema.get("maximum", 2) <= 1:
                return self._add_rule(rule_name, _UNIT_INTERVAL_RULE)
            if kind == "integer" and "minimum" in schema and "maximum" in schema:
                low, high = int(schema["minimum"]), int(schema["maximum"])
                if 0 <= high - low <= 200:
                    alternatives = " | ".join(f'"{n}"' for n in range(high, low - 1, -1))
                    return self._add_rule(rule_name, f"({alternatives}) space")
            if kind == "string" and "maxLength" in schema and "format" not in schema:
                low, high = int(schema.get("minLength", 0)), int(schema["maxLength"])
                pattern = schema.get("pattern")
                prefix = _literal_prefix(pattern) if pattern else None
                if prefix is not None:  # "^def " and the like: the literal, then free text
                    start, low, high = f'"{prefix}" ', max(0, low - len(prefix)), high - len(prefix)
                elif pattern is None and low >= 1:  # prose starts with a word, not stray punctuation
                    start, low, high = "[A-Za-z0-9] ", low - 1, high - 1
                elif pattern is None:
                    start = ""
                else:
                    return super().visit(schema, name)
                char = self._add_primitive("char", llama_grammar.PRIMITIVE_RULES["char"])
                return self._add_rule(rule_name, f'"\\"" {start}{char}{{{low},{high}}} "\\"" space')
            return super().visit(schema, name)


        def _add_primitive(self, name, rule):  # noqa: D102 - same contract as the parent
            if name == "char":  # every JSON string character, bounded or not, without raw control characters
                return self._add_rule("char", _CHAR_RULE)
            return super()._add_primitive(name, rule)

    return _BoundedSchemaConverter


def _literal_prefix(pattern: str) -> str | None:
    """'^def ' -> 'def ': a pattern that only fixes how the string starts (letters, digits, _ and spaces)."""
    match = re.fullmatch(r"\^([A-Za-z0-9_ ]+)", pattern)
    return match.group(1) if match else None


def schema_to_gbnf(schema: dict) -> str:
    """A GBNF grammar that makes llama.cpp produce only JSON of this schema's shape."""
    converter = _converter_class()(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    schema = converter.resolve_refs(schema, "")
    converter.visit(schema, "")
    return converter.format_grammar()


class FieldStreamer:
    """Incrementally decodes the string value of one top-level key from streamed JSON text."""

    _ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

    def __init__(self, field: str):
        self.field = field
        self._depth = 0
        self._in_string = False
        self._escape = ""  # pending escape sequence after a backslash
        self._buffer: list[str] = []  # current string's characters
        self._last_key: str | None = None
        self._high_surrogate: int | None = None
        self._expect_value = False
        self._emitting = False

    def feed(self, chunk: str) -> str:
        """Consume more JSON text; return newly decoded characters of the target field."""
        out: list[str] = []
        for ch in chunk:
            if self._in_string:
                decoded = self._string_char(ch)
                if decoded is None:  # string closed
                    self._close_string()
                elif decoded and self._emitting:
                    out.append(decoded)
                continue
            if ch == '"':
                self._in_string = True
                self._buffer = []
                self._emitting = self._depth == 1 and self._expect_value and self._last_key == self.field
            elif ch in "{[":
                self._depth += 1
                self._expect_value = False
            elif ch in "}]":
                self._depth -= 1
            elif ch == ":" and self._depth == 1:
                self._expect_value = True
            elif ch == "," and self._depth == 1:
                self._expect_value = False
                self._last_key = None
        return "".join(out)

    def _string_char(self, ch: str) -> str | None:
        if self._escape:
            self._escape += ch
            if self._escape[1] == "u":
                if len(self._escape) < 6:
                    return ""
                try:
                    code = int(self._escape[2:], 16)
                except ValueError:
                    code = None
                self._escape = ""
                return self._code_point(code)
            else:
                decoded = self._ESCAPES.get(ch, ch)
            self._escape = ""
            self._buffer.append(decoded)
            return decoded
        if ch == "\\":
            self._escape = ch
            return ""
        if ch == '"':
            return None
        self._buffer.append(ch)
        return ch

    def _code_point(self, code: int | None) -> str:
        """A \\uXXXX escape; a surrogate pair (an emoji) is emitted only once both halves arrived,
        as one character: a lone half is not valid UTF-8 and would break the message carrying it."""
        if code is None:
            return ""
        if 0xD800 <= code <= 0xDBFF:
            self._high_surrogate = code
            return ""
        if 0xDC00 <= code <= 0xDFFF:
            high, self._high_surrogate = self._high_surrogate, None
            if high is None:
                return ""
            code = 0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00)
        decoded = chr(code)
        self._buffer.append(decoded)
        return decoded

    def _close_string(self) -> None:
        self._in_string = False
        if self._depth == 1 and not self._expect_value:
            self._last_key = "".join(self._buffer)
        elif self._depth == 1:
            self._expect_value = False
        self._emitting = False


def list_layout(items: int, marker: str = "1.") -> str:
    """GBNF for prose that is exactly `items` list lines ("1. ..." numbered, or "- ..." bullets), one
    line each: a task that asks for three things gets three, whatever the model would ramble."""
    lines = []
    for number in range(1, items + 1):
        prefix = f"{number}. " if marker == "1." else "- "
        lines.append(f'"{prefix}" item' + (' "\\n"' if number < items else ""))
    return "root ::= " + " ".join(lines) + '\nitem ::= [A-Za-z0-9*"(] [^\\n]{1,400}\n'


def prose_layout() -> str:
    """GBNF for prose without a backtick: words about code shown above them, which must not add code
    of their own (a stray example block, calling a name that is nowhere defined, was measured to be read
    as part of the answer's code)."""
    return "root ::= [^`]*\n"
