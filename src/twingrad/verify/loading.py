"""Importing a student's file: no bytecode written next to it, and a plain-words
paragraph instead of a traceback when it cannot be imported.

Only the grading worker (a child process) imports students' code, so the
changes to ``sys.path`` and ``sys.modules`` made here die with it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tokenize
from types import ModuleType

from .calling import PYTHON2_METHODS, PYTHON2_NAMES, python2_hint_for, exception_info

# Constructs that are Python 2 only; a SyntaxError plus one of these reads as Python 2 code.
_PYTHON2_PATTERNS = [
    (re.compile(r"^\s*print\s+[^\s(=.,)\[]"), "a print statement"),
    (re.compile(r"^\s*print\s*$"), "a print statement"),
    (re.compile(r"^\s*except\s+[\w.]+\s*,\s*\w+\s*:"), "'except E, e:'"),
    (re.compile(r"^\s*raise\s+\w+\s*,"), "'raise E, message'"),
    (re.compile(r"^\s*exec\s+['\"\w]"), "an exec statement"),
    (re.compile(r"\bur['\"]"), "a ur'' string"),
    (re.compile(r"<>"), "the <> operator"),
]
_PYTHON2_CALLS = [(re.compile(rf"\b{name}\s*\("), name) for name in PYTHON2_NAMES if name not in ("file", "reduce")]
_PYTHON2_CALLS += [(re.compile(rf"\.{name}\s*\("), f".{name}()") for name in PYTHON2_METHODS]


class ImportProblem(Exception):
    """The submission cannot be imported; ``str(self)`` is the paragraph to show."""


def python2_evidence(source: str, limit: int = 3) -> list[str]:
    """Up to ``limit`` descriptions like "a print statement (line 12)" of Python 2 constructs in ``source``."""
    found = []
    for number, line in enumerate(source.splitlines(), start=1):
        code = line.split("#", 1)[0]
        for pattern, what in _PYTHON2_PATTERNS + _PYTHON2_CALLS:
            if pattern.search(code):
                found.append(f"{what} (line {number})")
                break
        if len(found) >= limit:
            break
    return found


def _read(path: str) -> str:
    try:
        with tokenize.open(path) as handle:  # honours a coding: cookie, as import does
            return handle.read()
    except (OSError, SyntaxError, UnicodeDecodeError):
        with open(path, encoding="latin-1") as handle:
            return handle.read()


def _search_path(path: str) -> list[str]:
    """Where the submission's own imports are found: its folder, and above a package's top."""
    folder = os.path.dirname(os.path.abspath(path))
    entries = [folder]
    while os.path.exists(os.path.join(folder, "__init__.py")):
        # cs231n/layers.py importing "from cs231n.fast_layers import ..." needs the folder above cs231n.
        folder = os.path.dirname(folder)
        entries.append(folder)
    return entries


def load(path: str) -> ModuleType:
    """Import the file at ``path`` as a module, writing nothing to disk.

    Raises
    ------
    ImportProblem
        With one paragraph that says what went wrong (and whether the file
        looks like Python 2), never a traceback.
    """
    if not os.path.isfile(path):
        raise ImportProblem(f"{path}: no such file. Nothing was checked.")
    for entry in reversed(_search_path(path)):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    stem = os.path.splitext(os.path.basename(path))[0]
    name = stem if stem.isidentifier() and stem not in sys.modules else "twingrad_submission"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportProblem(f"{path} is not a Python source file. Nothing was checked.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so its own "import layers" finds this module, not a second copy
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ next to the file
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise ImportProblem(_syntax_message(path, exc)) from None
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise ImportProblem(_import_message(path, exc)) from None
    finally:
        sys.dont_write_bytecode = writes_bytecode
    return module


def _python2_sentence(source: str) -> str:
    evidence = python2_evidence(source)
    if not evidence:
        return ""
    return (f" The file looks like Python 2 code ({'; '.join(evidence)}); twingrad runs Python 3: write "
            "print(...) as a function, range for xrange, .items() for .iteritems(), 'except E as e:'.")


def import_paragraph(path: str, info: dict, source: str = "") -> str:
    """The paragraph shown when the module at ``path`` cannot be imported, from the exception's report.

    ``info`` is what :func:`.calling.exception_info` (or the runner) reports; ``source``
    the module's text, searched for Python 2 constructs.
    """
    type_name = str(info.get("type", "Exception"))[:100]
    if type_name in ("SyntaxError", "IndentationError", "TabError"):
        line = info.get("lineno")
        where = f" at line {line}" if isinstance(line, int) else ""
        text = str(info.get("text") or "").strip()
        code = f": {text}" if text else ""
        return (f"Cannot import {path}: {type_name}{where}{code} ({info.get('msg') or info.get('message')})."
                f"{_python2_sentence(source)} Nothing was checked.")
    frames = info.get("frames") or []
    where = f" at line {frames[-1][1]}" if frames and isinstance(frames[-1], list) and len(frames[-1]) == 3 else ""
    message = str(info.get("message", "")).strip()
    text = message.splitlines()[0][:300] if message else ""
    result = (f"Cannot import {path}: {type_name}{where}{': ' + text if text else ''}"
              f"{python2_hint_for(type_name, info.get('name'))}.")
    if type_name == "ModuleNotFoundError" and info.get("name"):
        result += (f" The module {info['name']!r} is not installed here: install it, or remove the import if the "
                   "checked functions do not need it.")
    if type_name in ("NameError", "AttributeError"):
        result += _python2_sentence(source)
    return result + " Nothing was checked."


def _syntax_message(path: str, exc: SyntaxError) -> str:
    info = {"type": type(exc).__name__, "lineno": exc.lineno, "text": exc.text, "msg": exc.msg}
    return import_paragraph(path, info, _read(path))


def _import_message(path: str, exc: BaseException) -> str:
    return import_paragraph(path, exception_info(exc, path), _read(path))
