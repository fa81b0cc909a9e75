#!/usr/bin/env python3
"""The longest functions of the package, in lines (issue 14 tracks stage functions over ~60 lines).

Usage: python tools/longest_functions.py [CHECKOUT] [N]
"""
import ast
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
rows = []
for f in (root / "edgecnn").rglob("*.py"):
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            rows.append((node.end_lineno - node.lineno + 1, f"{f.relative_to(root)}:{node.name}"))
for n, name in sorted(rows, reverse=True)[: int(sys.argv[2]) if len(sys.argv) > 2 else 12]:
    print(n, name)
