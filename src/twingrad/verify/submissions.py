"""Finding submissions and taking a private snapshot of each before anything runs.

``--impl PATH`` may name

- a ``.py`` file: one submission, that module alone;
- a *submission*: a folder or a ``.zip`` holding a ``layers.py`` at any depth
  (the course package, ``assignment2/cs231n/...``): imported as the package
  it was written for, so that ``from ..layers import *`` and
  ``from cs231n.layers import *`` both work;
- a *class*: a folder whose entries are submissions (folders, zips, or loose
  ``.py`` files), one result per entry, named by the entry.

Every submission's files are copied (zips extracted, only ``.py`` members,
never outside the target, size-capped) into a private folder before any
runner starts: a submission that rewrites a classmate's files changes
nothing, and a runner sees only its own copy.

A function whose TODO blocks (between a ``TODO`` comment and ``END OF YOUR
CODE``) all still hold nothing but ``pass`` is the course's untouched
template (:func:`untouched`): ``missing``, never ``error`` or ``fail``,
whatever its template lines do with the ``None`` they hold. Judged on the
snapshot's source, without running anything.
"""

from __future__ import annotations

import ast
import os
import shutil
import stat
import sys
import zipfile
from dataclasses import dataclass, field

from .._text import printable

MAX_FILES = 2000
MAX_FILE_BYTES = 5 * 2**20
MAX_TOTAL_BYTES = 50 * 2**20
_SKIPPED_DIRS = {"__MACOSX", "__pycache__", ".ipynb_checkpoints", "site-packages", "node_modules"}
# Where each role's module sits in the course package (the first that exists).
ROLES = {
    "layers": ("layers",),
    "layer_utils": ("layer_utils",),
    "fc_net": ("classifiers.fc_net", "fc_net"),
    "cnn": ("classifiers.cnn", "cnn"),
    "fast_layers": ("fast_layers",),
    "optim": ("optim",),
}


class SubmissionError(Exception):
    """A path that holds no submission, or an archive that cannot be read safely."""


@dataclass
class Submission:
    """One submission: where its snapshot is and how to import it, and, once graded, what was found."""

    name: str  #: as shown: the path given, or the entry of a class folder (control characters escaped)
    path: str  #: as given
    root: str = ""  #: the private snapshot folder
    modules: dict = field(default_factory=dict)  #: role -> dotted module name
    files: dict = field(default_factory=dict)  #: role -> file, relative to the snapshot
    paths: list = field(default_factory=list)  #: extra import folders, relative to the snapshot
    records: list = field(default_factory=list)
    import_error: str | None = None
    internal_error: str | None = None
    uses_twingrad: bool = False
    dropout_convention: str | None = None  #: "drop" or "keep": what dropout's p was taken to mean
    dropout_note: str | None = None  #: what the detection saw (--dropout-convention auto)
    timings: dict = field(default_factory=dict)  #: function -> seconds


def discover(paths: list[str], workdir: str) -> list[Submission]:
    """Every submission named by ``paths``, each snapshot into its own folder under ``workdir``."""
    found: list[Submission] = []
    for path in paths:
        if os.path.isdir(path):
            found += _folder(path)
        elif os.path.isfile(path) and (path.endswith(".py") or zipfile.is_zipfile(path)):
            found.append(Submission(printable(path), path))
        elif path.lower().endswith(".zip") and os.path.isfile(path):
            raise SubmissionError(f"--impl {printable(path)}: not a readable zip archive")
        elif os.path.exists(path):
            raise SubmissionError(f"--impl {printable(path)}: not a .py file, a .zip or a folder")
        else:
            raise SubmissionError(f"--impl {printable(path)}: no such file or folder")
    if not found:
        raise SubmissionError(f"no submissions (.py files, or folders or zips holding a layers.py) in "
                              f"{' '.join(printable(p) for p in paths)}")
    for index, submission in enumerate(found):
        snapshot(submission, os.path.join(workdir, str(index)))
    return found


def _folder(path: str) -> list[Submission]:
    if os.path.isfile(os.path.join(path, "layers.py")):
        return [Submission(printable(path), path)]
    entries = [e for e in sorted(os.listdir(path)) if not e.startswith(".") and e not in _SKIPPED_DIRS]
    full = {e: os.path.join(path, e) for e in entries}
    packages = [e for e in entries if _holds_layers(full[e])]
    if len(packages) == 1 and os.path.isdir(full[packages[0]]) and not any(e.endswith(".py") for e in entries):
        return [Submission(printable(path), path)]  # a student's folder: assignment2/cs231n/layers.py
    members = packages + [e for e in entries if e.endswith(".py") and e != "__init__.py" and os.path.isfile(full[e])]
    return [Submission(printable(e), full[e]) for e in sorted(members)]


def _holds_layers(path: str) -> bool:
    if os.path.isdir(path):
        return _find_layers(path) is not None
    if os.path.isfile(path) and path.endswith(".zip") and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                return any(_usable(name) and name.rsplit("/", 1)[-1] == "layers.py" for name in archive.namelist())
        except (zipfile.BadZipFile, OSError):
            return True  # graded, and reported as unreadable
    return False


def _find_layers(root: str, depth: int = 8) -> str | None:
    """The folder of the ``layers.py`` to grade: one named cs231n first, then the shallowest."""
    candidates = []
    for folder, dirs, files in os.walk(root):
        level = os.path.relpath(folder, root).count(os.sep)
        dirs[:] = [] if level >= depth else sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
        if "layers.py" in files:
            candidates.append((os.path.basename(folder) != "cs231n", level, folder))
    return min(candidates)[2] if candidates else None


def _usable(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return not any(p.startswith(".") or p in _SKIPPED_DIRS for p in parts[:-1])


def snapshot(submission: Submission, target: str) -> None:
    """Copy the submission's Python files to ``target`` and decide how its modules are imported."""
    os.makedirs(target, mode=0o700)
    source = submission.path
    try:
        if os.path.isfile(source) and source.endswith(".py"):
            _single_file(submission, source, target)
            return
        if os.path.isfile(source):
            extracted = os.path.join(target, "extracted")
            _extract(source, extracted)
            source = extracted
        package = _find_layers(source)
        if package is None:
            submission.import_error = f"{submission.name}: no layers.py in it. Nothing was checked."
            return
        _package(submission, package, target)
    except (OSError, SubmissionError, zipfile.BadZipFile) as exc:
        submission.import_error = f"Cannot read {submission.name}: {exc}. Nothing was checked."
    finally:
        if os.path.isdir(os.path.join(target, "extracted")):
            shutil.rmtree(os.path.join(target, "extracted"), ignore_errors=True)


def _module_name(stem: str) -> str:
    reserved = set(sys.stdlib_module_names) | {"numpy", "autograd", "twingrad", "scipy", "cs231n"}
    return stem if stem.isidentifier() and stem not in reserved else "submission"


def _single_file(submission: Submission, source: str, target: str) -> None:
    name = _module_name(os.path.splitext(os.path.basename(source))[0])
    _copy(source, os.path.join(target, name + ".py"), [0])
    submission.root = target
    submission.modules = {role: name for role in ROLES}
    submission.files = {role: name + ".py" for role in ROLES}


def _package(submission: Submission, package: str, target: str) -> None:
    base = os.path.basename(os.path.normpath(package))
    name = base if base.isidentifier() and base == _module_name(base) or base == "cs231n" else "cs231n"
    total = [0]
    for folder, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
        for file in files:
            if file.endswith(".py"):
                relative = os.path.relpath(os.path.join(folder, file), package)
                _copy(os.path.join(folder, file), os.path.join(target, name, relative), total)
    submission.root = target
    submission.paths = [name]  # 2016 code also does "from layers import *"
    for role, candidates in ROLES.items():
        for candidate in candidates:
            relative = os.path.join(name, *candidate.split(".")) + ".py"
            if os.path.isfile(os.path.join(target, relative)):
                submission.modules[role] = f"{name}.{candidate}"
                submission.files[role] = relative
                break


def _copy(source: str, destination: str, total: list) -> None:
    info = os.lstat(source)
    if not stat.S_ISREG(info.st_mode):
        return  # symlinks and devices are not copied
    if info.st_size > MAX_FILE_BYTES:
        raise SubmissionError(f"{os.path.basename(source)} is over {MAX_FILE_BYTES // 2**20} MB")
    total[0] += info.st_size
    if total[0] > MAX_TOTAL_BYTES:
        raise SubmissionError(f"its Python files are over {MAX_TOTAL_BYTES // 2**20} MB in all")
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    with open(source, "rb") as src, open(destination, "wb") as dst:
        dst.write(src.read(MAX_FILE_BYTES + 1))


def _extract(archive_path: str, target: str) -> None:
    """The ``.py`` members of a zip, each checked to land inside ``target`` and capped in size."""
    total, count = 0, 0
    with zipfile.ZipFile(archive_path) as archive:
        for info in archive.infolist():
            name = info.filename.replace("\\", "/")
            parts = [p for p in name.split("/") if p not in ("", ".")]
            if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
                raise SubmissionError(f"the archive member {printable(info.filename)!r} points outside the archive")
            if info.is_dir() or not name.endswith(".py") or not _usable(name) or stat.S_ISLNK(info.external_attr >> 16):
                continue
            count += 1
            if count > MAX_FILES:
                raise SubmissionError(f"the archive holds over {MAX_FILES} Python files")
            with archive.open(info) as member:
                data = member.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                raise SubmissionError(f"the archive member {printable(info.filename)!r} is over "
                                      f"{MAX_FILE_BYTES // 2**20} MB")
            total += len(data)
            if total > MAX_TOTAL_BYTES:
                raise SubmissionError(f"the archive's Python files are over {MAX_TOTAL_BYTES // 2**20} MB in all")
            destination = os.path.join(target, *parts)
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            with open(destination, "wb") as handle:
                handle.write(data)


# -- untouched templates ----------------------------------------------------------------


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
