"""The house rules: the library never imports the app, and pieces stay small enough to read."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 450
SOURCES = sorted((REPO / "basicseg").rglob("*.py")) + sorted((REPO / "bidsapp").rglob("*.py"))


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize("path", [p for p in SOURCES if "basicseg" in p.relative_to(REPO).parts[:1]],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_library_never_imports_the_app(path):
    imported = set(_imports(ast.parse(path.read_text())))
    assert not {m for m in imported if m == "bidsapp" or m.startswith("bidsapp.")}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_small_modules_and_functions(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long
