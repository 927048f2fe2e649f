"""Recognising the course's untouched templates: a function whose TODO blocks hold nothing but ``pass``.

The starter code marks where students write, between a ``TODO`` comment and
``END OF YOUR CODE``. A function whose every such block is still empty is not
implemented yet, whatever its template lines do with the ``None`` they hold
(``out.astype(...)`` raises; ``dx = np.zeros_like(x)`` returns zeros): it is
``missing``, never ``error`` or ``fail``. Judged on the snapshot's source, in
the judge, without running anything.
"""

from __future__ import annotations

import ast
import os


def untouched(root: str, files, qualname: str) -> bool:
    """True when ``qualname`` (``"affine_forward"``, ``"FullyConnectedNet.loss"``) is defined in one of
    ``files`` (relative to ``root``) with TODO blocks, all of them empty."""
    for relative in dict.fromkeys(files):
        try:
            with open(os.path.join(root, relative), encoding="utf-8", errors="replace") as handle:
                source = handle.read()
            tree = ast.parse(source)
        except (OSError, SyntaxError, ValueError):
            continue
        node = _find(tree, qualname.split("."))
        if node is not None:
            lines = source.splitlines()[node.lineno - 1:node.end_lineno]
            blocks = _todo_blocks(lines)
            return bool(blocks) and all(_empty(block) for block in blocks)
    return False


def _find(tree, names: list):
    body = tree.body
    node = None
    for name in names:
        node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name), None)
        if node is None:
            return None
        body = node.body
    return node if isinstance(node, ast.FunctionDef) else None


def _todo_blocks(lines: list[str]) -> list[list[str]]:
    blocks, current = [], None
    for line in lines:
        text = line.strip()
        if current is None and text.startswith("#") and "TODO" in text:
            current = []
        elif current is not None and "END OF YOUR CODE" in text:
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(text)
    return blocks


def _empty(block: list[str]) -> bool:
    return all(not line or line.startswith("#") or line == "pass" for line in block)
