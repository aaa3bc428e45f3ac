"""basicseg/training stays in small pieces: no function over 60 lines, no module over 450."""
import ast
from pathlib import Path

import pytest

TRAINING = Path(__file__).resolve().parent.parent / "basicseg" / "training"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 450
MODULES = sorted(TRAINING.glob("*.py"))


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_module_and_its_functions_are_small(module):
    text = module.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    functions = [n for n in ast.walk(ast.parse(text)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    long = {f.name: f.end_lineno - f.lineno + 1 for f in functions if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES}
    assert not long, f"{module.name}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_bidsapp_is_never_imported_by_the_library():
    for module in MODULES:
        imports = [n for n in ast.walk(ast.parse(module.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [a.name for n in imports if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in imports if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] == "bidsapp"], module.name
