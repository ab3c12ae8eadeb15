"""The code stays readable at a glance: no function in helpers/ (any subpackage) longer than 60 lines (issue 10)."""

import ast
from pathlib import Path

HELPERS = Path(__file__).resolve().parent.parent / "helpers"
MAX_LINES = 60


def long_functions(folder: Path = HELPERS, limit: int = MAX_LINES) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    found.append(f"{path.relative_to(folder)}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_no_function_in_helpers_is_longer_than_60_lines():
    assert not long_functions(), "split these: " + ", ".join(long_functions())


def test_the_check_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n")
    assert long_functions(tmp_path) == [
        f"pkg/m.py:5 long ({MAX_LINES + 1} lines)"
    ]  # subpackages are read too
