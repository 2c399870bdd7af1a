"""Static checks of model-written tool code, on its AST only (nothing is executed here).

A tool is one top-level function (no decorators, constant defaults) plus standard-library imports;
its tests are top-level test_* functions. Anything else would run at import time and is refused.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

ALLOWED_IMPORTS = frozenset({
    "base64", "bisect", "calendar", "collections", "dataclasses", "datetime", "decimal", "fractions",
    "functools", "hashlib", "heapq", "itertools", "json", "math", "operator", "random", "re", "statistics",
    "string", "textwrap", "typing", "unicodedata",
})


class ToolCheckError(ValueError):
    """The code breaks a rule; the message is fed back to the model."""


@dataclass(frozen=True)
class CheckedTool:
    name: str
    signature: str
    docstring: str
    test_names: tuple[str, ...]


def _parse(source: str, what: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        raise ToolCheckError(f"{what} has a syntax error at line {exc.lineno}: {exc.msg}") from None


def _check_import(node: ast.stmt, what: str) -> None:
    modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
    for module in modules:
        if module.split(".")[0] not in ALLOWED_IMPORTS:
            raise ToolCheckError(f"{what} imports {module!r}; allowed: {', '.join(sorted(ALLOWED_IMPORTS))}")
    if isinstance(node, ast.ImportFrom) and node.level:
        raise ToolCheckError(f"{what} uses a relative import")


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _check_function(node: ast.FunctionDef, what: str) -> None:
    if node.decorator_list:
        raise ToolCheckError(f"{what}: function {node.name!r} must not have decorators")
    defaults = [*node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]
    for default in defaults:
        try:
            ast.literal_eval(default)
        except ValueError:
            raise ToolCheckError(f"{what}: default values of {node.name!r} must be constants") from None


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
            raise ToolCheckError(f"the code has a top-level {type(node).__name__} at line {node.lineno}; "
                                 "only imports and one function are allowed")
    if len(functions) != 1:
        raise ToolCheckError(f"the code must define exactly one top-level function, found {len(functions)}")
    function = functions[0]
    for inner in ast.walk(function):
        if isinstance(inner, (ast.Import, ast.ImportFrom)):
            _check_import(inner, "the code")
    if function.name != name:
        raise ToolCheckError(f"the function is named {function.name!r} but the tool is named {name!r}")
    docstring = ast.get_docstring(function) or ""
    if not docstring:
        raise ToolCheckError(f"the function {name!r} needs a docstring")

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
            raise ToolCheckError(f"the tests have a top-level {type(node).__name__} at line {node.lineno}; "
                                 "only imports and test_ functions are allowed")
    if not test_names:
        raise ToolCheckError("the tests must define at least one function named test_...")
    calls_tool = any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(test_module))
    if not calls_tool:
        raise ToolCheckError(f"the tests never call {name!r}")
    returns = f" -> {ast.unparse(function.returns)}" if function.returns else ""
    signature = f"{name}({ast.unparse(function.args)}){returns}"
    return CheckedTool(name, signature, docstring.strip(), tuple(test_names))
