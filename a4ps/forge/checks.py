"""Static checks of model-written tool code, on its AST only (nothing is executed here).

A tool is one top-level function (no decorators, constant defaults) plus standard-library imports;
its tests are top-level test_* functions. Anything else would run at import time and is refused.
`prepare_tool` first makes the mechanical repairs a model should not spend an attempt on (the
docstring it gave as its own field goes into the function; stray example calls are dropped); the
rules themselves stay strict, and every refusal says how to fix it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

ALLOWED_IMPORTS = frozenset({
    "base64", "bisect", "calendar", "collections", "dataclasses", "datetime", "decimal", "fractions",
    "functools", "hashlib", "heapq", "itertools", "json", "math", "operator", "random", "re", "statistics",
    "string", "textwrap", "typing", "unicodedata",
})
TOOL_NAME = re.compile(r"[a-z][a-z0-9_]{2,39}")


class ToolCheckError(ValueError):
    """The code breaks a rule. str() is the rule that was broken; `hint` says how to fix it.
    Both are fed back to the model."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint

    @property
    def feedback(self) -> str:
        return f"{self}. {self.hint}" if self.hint else str(self)


@dataclass(frozen=True)
class CheckedTool:
    name: str
    signature: str
    docstring: str
    test_names: tuple[str, ...]


@dataclass(frozen=True)
class PreparedTool:
    """The model's answer after the mechanical repairs; `repairs` says what was changed and why."""

    name: str
    code: str
    tests: str
    repairs: tuple[str, ...] = field(default=())


def _parse(source: str, what: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        line = (exc.text or "").rstrip()
        at = f": `{line.strip()}`" if line.strip() else ""
        verb = "have" if what.endswith("s") else "has"
        raise ToolCheckError(f"{what} {verb} a syntax error at line {exc.lineno}{at}: {exc.msg}",
                             "Write valid Python with 4-space indentation and a newline (\\n) after every "
                             "statement.") from None


def _check_import(node: ast.stmt, what: str) -> None:
    modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
    for module in modules:
        if module.split(".")[0] not in ALLOWED_IMPORTS:
            raise ToolCheckError(f"{what} imports {module!r}, which is not allowed",
                                 f"Do without it; the only modules allowed are {', '.join(sorted(ALLOWED_IMPORTS))}.")
    if isinstance(node, ast.ImportFrom) and node.level:
        raise ToolCheckError(f"{what} uses a relative import", "Import standard-library modules by their full name.")


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _check_function(node: ast.FunctionDef, what: str) -> None:
    if node.decorator_list:
        raise ToolCheckError(f"{what}: function {node.name!r} must not have decorators",
                             "Remove the decorator; write the logic inside the function.")
    defaults = [*node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]
    for default in defaults:
        try:
            ast.literal_eval(default)
        except ValueError:
            raise ToolCheckError(f"{what}: default values of {node.name!r} must be constants",
                                 "Use None as the default and compute the value inside the function.") from None


def check_tool(name: str, code: str, tests: str) -> CheckedTool:
    """Validate the tool and its tests; returns what the registry needs to describe it."""
    module = _parse(code, "the code")
    functions = []
    for index, node in enumerate(module.body):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            _check_import(node, "the code")
        elif isinstance(node, ast.FunctionDef):
            _check_function(node, "the code")
            functions.append(node)
        elif not (index == 0 and _is_docstring(node)):
            raise ToolCheckError(f"the code has a top-level {type(node).__name__} at line {node.lineno} "
                                 f"(`{ast.unparse(node).splitlines()[0][:80]}`); only imports and one function "
                                 "are allowed",
                                 "Move it inside the function or delete it; put examples in the tests instead.")
    if len(functions) != 1:
        names = ", ".join(f.name for f in functions)
        raise ToolCheckError(f"the code must define exactly one top-level function, found {len(functions)}"
                             + (f" ({names})" if names else ""),
                             "Put helpers inside the one function (nested def) and keep the tests out of the code.")
    function = functions[0]
    for inner in ast.walk(function):
        if isinstance(inner, (ast.Import, ast.ImportFrom)):
            _check_import(inner, "the code")
    if function.name != name:
        raise ToolCheckError(f"the function is named {function.name!r} but the tool is named {name!r}",
                             "Give the function and the tool the same name.")
    docstring = ast.get_docstring(function) or ""
    if not docstring:
        raise ToolCheckError(f"the function {name!r} needs a docstring",
                             "Start the function body with a one-line docstring.")

    test_module = _parse(tests, "the tests")
    test_names = []
    for node in test_module.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            _check_import(node, "the tests")
        elif isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            _check_function(node, "the tests")
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    _check_import(inner, "the tests")
            test_names.append(node.name)
        elif not _is_docstring(node):
            raise ToolCheckError(f"the tests have a top-level {type(node).__name__} at line {node.lineno} "
                                 f"(`{ast.unparse(node).splitlines()[0][:80]}`); only imports and test_ functions "
                                 "are allowed",
                                 "Put every check inside a function named test_...; the tests are run for you.")
    if not test_names:
        raise ToolCheckError("the tests must define at least one function named test_...",
                             f"Write e.g. def test_{name}(): with assert {name}(...) == ... lines.")
    calls_tool = any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(test_module))
    if not calls_tool:
        raise ToolCheckError(f"the tests never call {name!r}",
                             f"Each test must call {name}(...) and compare its result with the expected value, "
                             f"e.g. {name}(...) == <expected value>.")
    returns = f" -> {ast.unparse(function.returns)}" if function.returns else ""
    signature = f"{name}({ast.unparse(function.args)}){returns}"
    return CheckedTool(name, signature, docstring.strip(), tuple(test_names))


# --- mechanical repairs before the checks ------------------------------------------------------------

def _is_main_guard(node: ast.stmt) -> bool:
    """`if __name__ == "__main__":` — example code the tool never needs."""
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and len(test.comparators) == 1 and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


def _is_stray_example(node: ast.stmt, keep_first_docstring: bool, index: int) -> bool:
    """A top-level expression (a call like `print(f(3))` or `test_f()`) or a __main__ guard."""
    if keep_first_docstring and index == 0 and _is_docstring(node):
        return False
    return (isinstance(node, ast.Expr) and not _is_docstring(node)) or _is_main_guard(node)


def _drop_lines(source: str, nodes: list[ast.stmt]) -> str:
    dropped = {line for node in nodes for line in range(node.lineno - 1, node.end_lineno or node.lineno)}
    return "".join(line for index, line in enumerate(source.splitlines(keepends=True)) if index not in dropped)


def _strip_examples(source: str, keep_first_docstring: bool) -> tuple[str, int]:
    """Drop stray top-level example statements; unparsable source is returned as it is."""
    try:
        module = ast.parse(source)
    except SyntaxError:
        return source, 0
    stray = [n for i, n in enumerate(module.body) if _is_stray_example(n, keep_first_docstring, i)]
    if not stray or len(stray) == len(module.body):
        return source, 0
    return _drop_lines(source, stray), len(stray)


def _docstring_literal(text: str) -> str:
    text = " ".join(text.split())
    if '"""' not in text and "\\" not in text and not text.endswith('"'):
        return f'"""{text}"""'
    return repr(text)


def insert_docstring(code: str, docstring: str) -> str:
    """Put `docstring` into the code's single top-level function when it has none (so the stored
    source documents itself); code that does not parse or already has one is returned unchanged."""
    if not docstring.strip():
        return code
    try:
        module = ast.parse(code)
    except SyntaxError:
        return code
    functions = [n for n in module.body if isinstance(n, ast.FunctionDef)]
    if len(functions) != 1 or ast.get_docstring(functions[0]) is not None:
        return code
    function = functions[0]
    first = function.body[0]
    lines = code.splitlines(keepends=True)
    if first.lineno > function.lineno and first.lineno - 1 < len(lines):
        line = lines[first.lineno - 1]
        indent = line[: len(line) - len(line.lstrip())] or "    "
        lines.insert(first.lineno - 1, f"{indent}{_docstring_literal(docstring)}\n")
        return "".join(lines)
    # body on the def line (`def f(x): return x`): rebuild from the AST (comments are lost)
    function.body.insert(0, ast.Expr(ast.Constant(" ".join(docstring.split()))))
    return ast.unparse(ast.fix_missing_locations(module)) + "\n"


def assert_expression(text: str) -> str:
    """An assert as one line without the keyword: how checks are written, compared and reported."""
    text = text.replace("\r", " ").replace("\n", " ").strip()
    return text[len("assert "):].lstrip() if text.startswith("assert ") else text


def tests_from_asserts(asserts: list[str]) -> str:
    """One test function per assert expression, so that each is reported on its own. A leading
    `assert` is dropped and a line break becomes a space (an expression is one line)."""
    return "\n\n".join(f"def test_{index}():\n    assert {assert_expression(expression)}\n"
                        for index, expression in enumerate(asserts, 1))


def _is_expression(text: str) -> bool:
    try:
        ast.parse(assert_expression(text), mode="eval")
    except SyntaxError:
        return False
    return True


def prepare_tool(name: str, docstring: str, code: str, tests: str | list[str]) -> PreparedTool:
    """Make the repairs that need no judgement: stray example calls out, the docstring field in, and
    the tool named after its function when the tests call that function. Tests given as a list of
    assert expressions become test functions; an entry that is not a Python expression at all (a
    model sometimes copies a line of feedback into the list) is dropped while valid ones remain."""
    repairs = []
    if isinstance(tests, list):
        valid = [t for t in tests if _is_expression(t)]
        if valid and len(valid) < len(tests):
            dropped = [assert_expression(t) for t in tests if t not in valid]
            repairs.append("dropped check(s) that are not Python expressions: "
                           + "; ".join(f"`{d[:60]}`" for d in dropped))
            tests = valid
        tests = tests_from_asserts(tests)
    code, dropped = _strip_examples(code, keep_first_docstring=True)
    if dropped:
        repairs.append(f"removed {dropped} top-level example statement(s) from the code")
    tests, dropped = _strip_examples(tests, keep_first_docstring=True)
    if dropped:
        repairs.append(f"removed {dropped} top-level statement(s) from the tests (the tests are run for you)")
    with_doc = insert_docstring(code, docstring)
    if with_doc != code:
        repairs.append("inserted the docstring into the function")
        code = with_doc
    try:
        functions = [n for n in ast.parse(code).body if isinstance(n, ast.FunctionDef)]
        tested = {n.id for n in ast.walk(ast.parse(tests)) if isinstance(n, ast.Name)}
    except SyntaxError:
        functions, tested = [], set()
    if (len(functions) == 1 and functions[0].name != name and TOOL_NAME.fullmatch(functions[0].name)
            and functions[0].name in tested):
        repairs.append(f"named the tool {functions[0].name!r} after its function (the answer said {name!r})")
        name = functions[0].name
    return PreparedTool(name, code, tests, tuple(repairs))
