"""Issue 11: no Amaranth ``elaborate`` and no SimPy process function is longer than about 80 lines.

An AST scan of the package sources: every ``elaborate`` under rtlgen/, and every function whose name
contains "process" under sim/ and dataflow/, must span at most MAX_LINES lines (decorators and
docstring included).
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 90

def _long_functions(folder: str, wanted, root: Path = ROOT) -> list[str]:
    found = []
    for path in sorted((root / folder).rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), filename=rel)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and wanted(node.name):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                lines = node.end_lineno - start + 1
                if lines > MAX_LINES:
                    found.append(f"{rel}:{node.lineno} {node.name} is {lines} lines")
    return found


def _is_elaborate(name: str) -> bool:
    return name == "elaborate"


def test_elaborate_functions_are_short():
    assert _long_functions("rtlgen", _is_elaborate) == []


@pytest.mark.parametrize("folder", ["sim", "dataflow"])
def test_process_functions_are_short(folder):
    assert _long_functions(folder, lambda name: "process" in name) == []


def test_the_scan_reports_a_long_elaborate(tmp_path):
    (tmp_path / "rtlgen").mkdir()
    lines = ["class U:", "    def elaborate(self, platform):"] + ["        x = 1"] * 99
    lines += ["    def short(self):", "        return 1"]
    (tmp_path / "rtlgen" / "unit.py").write_text("\n".join(lines) + "\n")
    assert _long_functions("rtlgen", _is_elaborate, root=tmp_path) == ["rtlgen/unit.py:2 elaborate is 100 lines"]
