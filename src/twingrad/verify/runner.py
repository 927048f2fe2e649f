"""The untrusted side of grading: the process that imports one submission and calls it.

Run by the judge (:mod:`.judge`) as a script, by path, so that the
``twingrad`` package is never imported here::

    python -I runner.py SUBMISSION_FOLDER --memory-limit MB

It imports only the standard library, numpy and :mod:`.wire` (loaded by
path). It holds no reference value, no tolerance and no verdict: it reads a
request, calls what the submission defines on the inputs it was sent, and
writes back what came out (values, or the text and place of an exception).
Whatever it sends, the judge believes nothing beyond the values.

Requests (``op``): ``import`` the submission's modules; ``call`` a function
or a method of an earlier result; ``get`` an attribute; ``signature`` of a
callable; ``batch`` several calls in one message (the judge's plan of a
function's cases, to spare round trips). A request may also ask first to
``reset`` the table of results, or to ``seed`` numpy's global generator.
"""

import importlib
import importlib.util
import inspect
import os
import sys
import traceback

OUTPUT_LIMIT_MB = 64  # files the submission writes, and its printed output, stop growing here


def _load_wire():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wire.py")
    spec = importlib.util.spec_from_file_location("_twingrad_wire", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _limit_resources(megabytes: int) -> None:
    import resource

    limits = [(resource.RLIMIT_FSIZE, OUTPUT_LIMIT_MB * 2**20), (resource.RLIMIT_CORE, 0)]
    if megabytes > 0:
        limits.append((resource.RLIMIT_AS, megabytes * 2**20))
    for kind, limit in limits:
        _, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(kind, (limit, hard))


class Runner:
    def __init__(self, root: str, wire):
        self.root = os.path.realpath(root)
        self.wire = wire
        self.modules: dict = {}
        self.results: dict = {}

    # -- requests ---------------------------------------------------------------------

    def handle(self, request: dict, arrays: list):
        op = request.get("op")
        if request.get("reset"):
            self.results.clear()
        if "seed" in request:
            import numpy as np

            np.random.seed(int(request["seed"]))
        if op == "batch":  # several calls in one message; later ones may refer to earlier results
            answers, out = [], []
            for part in request["requests"]:
                answer, part_arrays = self.handle(part, arrays)
                answer["value"] = _shift(answer.get("value"), len(out))
                answer["args"] = [_shift(a, len(out)) for a in answer.get("args") or []]
                out += part_arrays
                answers.append(answer)
            return {"ok": True, "answers": answers}, out
        if op == "import":
            return {"ok": True, "modules": self.import_modules(request["modules"], request.get("paths", []))}, []
        key = str(request["id"])
        try:
            target = self.resolve(request["target"])
            if op == "call":
                args = self.wire.decode(request.get("args", {"$l": []}), arrays, self.reference)
                kwargs = self.wire.decode(request.get("kwargs", {"$d": []}), arrays, self.reference)
                value = target(*args, **kwargs)
                self.results["a" + key] = args
                answer = {"ok": True}
                encoder = self.encoder()
                answer["args"] = [encoder.encode(a, ("a" + key, i)) if type(a) is dict else None
                                  for i, a in enumerate(args)]
            elif op == "get":
                value, answer, encoder = target, {"ok": True}, self.encoder()
            elif op == "signature":
                try:
                    parameters = inspect.signature(target).parameters
                except (TypeError, ValueError):
                    parameters = None
                if parameters is None:
                    value = None
                elif request.get("defaults"):  # the plain-number defaults (FullyConnectedNet's dropout=1)
                    value = {n: p.default for n, p in parameters.items() if type(p.default) in (int, float, bool)}
                else:
                    value = list(parameters)
                return {"ok": True, "value": self.wire.Encoder().encode(value)}, []
            else:
                return {"ok": False, "error": {"type": "ProtocolError", "message": f"unknown op {op!r}"}}, []
        except BaseException as exc:  # noqa: BLE001  (SystemExit and KeyboardInterrupt are the submission's too)
            return {"ok": False, "error": self.describe(exc)}, []
        self.results[key] = value
        omit = set(request.get("omit", ()))
        try:
            if omit and type(value) in (tuple, list):
                items = [{"$o": type(v).__name__, "r": [key, i]} if i in omit else encoder.encode(v, (key, i), 1)
                         for i, v in enumerate(value)]
                answer["value"] = {"$t" if type(value) is tuple else "$l": items}
            else:
                answer["value"] = encoder.encode(value, (key,))
        except Exception as exc:  # noqa: BLE001  (a value whose own methods raise: this call's error, not ours)
            return {"ok": False, "error": {"type": "Unsendable", "message": str(exc)[:500], "frames": []}}, []
        return answer, encoder.arrays

    def encoder(self):
        return self.wire.Encoder(lambda value, path: {"$o": type(value).__name__, "r": list(path)})

    def reference(self, type_name, path):
        value = self.results[path[0]]
        for step in path[1:]:
            value = value[step]
        return value

    def resolve(self, target: dict):
        if "ref" in target:
            value = self.reference(None, tuple(target["ref"]))
        else:
            value = self.modules[target["role"]]
        for name in filter(None, target.get("attr", "").split(".")):
            value = getattr(value, name)
        return value

    # -- importing ----------------------------------------------------------------------

    def import_modules(self, modules: dict, paths: list) -> dict:
        """Import each role's module (``{"layers": "cs231n.layers", ...}``); report names or the exception."""
        for entry in reversed([os.path.join(self.root, p) for p in paths] + [self.root]):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        found = {}
        for role, dotted in modules.items():
            try:
                module = importlib.import_module(dotted)
            except BaseException as exc:  # noqa: BLE001
                found[role] = {"ok": False, "error": self.describe(exc)}
                continue
            self.modules[role] = module
            package = dotted.split(".")[0]
            if package != "cs231n" and "." in dotted:
                sys.modules.setdefault("cs231n", sys.modules[package])  # absolute cs231n.* imports
            found[role] = {"ok": True, "names": {name: "class" if isinstance(value, type) else "function"
                                                 for name, value in vars(module).items()
                                                 if callable(value) and not name.startswith("_")}}
        return found

    def describe(self, exc: BaseException) -> dict:
        """The exception as the judge needs it: type, message, and the frames in the submission's files."""
        frames = []
        for frame in traceback.extract_tb(exc.__traceback__):
            path = os.path.realpath(frame.filename)
            if path.startswith(self.root + os.sep):
                frames.append([os.path.relpath(path, self.root), frame.lineno, (frame.line or "").strip()[:300]])
        info = {"type": type(exc).__name__, "message": str(exc)[:2000], "frames": frames[-20:],
                "not_implemented": isinstance(exc, NotImplementedError)}
        for attribute in ("errno", "lineno", "msg", "text"):
            value = getattr(exc, attribute, None)
            if isinstance(value, (int, str)):
                info[attribute] = value if isinstance(value, int) else value[:300]
        name = getattr(exc, "name", None)
        if isinstance(name, str):
            info["name"] = name[:200]
        if isinstance(exc, SyntaxError) and exc.filename:
            path = os.path.realpath(exc.filename)
            info["file"] = os.path.relpath(path, self.root) if path.startswith(self.root + os.sep) else ""
        return info


def _shift(value, offset: int):
    """``value`` with its array indices moved by ``offset``: the parts of a batch share one list of arrays."""
    if isinstance(value, dict):
        if "$a" in value:
            return {**value, "$a": value["$a"] + offset}
        return {k: _shift(v, offset) for k, v in value.items()}
    if isinstance(value, list):
        return [_shift(v, offset) for v in value]
    return value


def _read_exactly(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 2**20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _watch_for_twingrad() -> list:
    """A list that becomes non-empty once the submission imports twingrad or opens one of its files.

    An audit hook cannot be removed, so deleting the modules from ``sys.modules`` afterwards, or reading
    twingrad's source to run it under another name, is still seen (reported as ``uses_twingrad``).
    """
    here = os.path.dirname(os.path.abspath(__file__))
    package = os.path.dirname(here) + os.sep
    # the runner's own files: tracebacks through them read their lines
    own = {os.path.join(here, name) for name in ("runner.py", "wire.py")}
    seen: list = []

    def audit(event, args):
        if seen or not args:
            return
        first = args[0]
        if event == "import" and isinstance(first, str) and (first == "twingrad" or first.startswith("twingrad.")):
            seen.append(first)
        elif event == "open" and isinstance(first, (str, bytes)):
            path = os.path.abspath(os.fsdecode(first))
            if path.startswith(package) and path not in own:
                seen.append(path)

    sys.addaudithook(audit)
    return seen


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = argv[0]
    memory_limit = int(argv[argv.index("--memory-limit") + 1]) if "--memory-limit" in argv else 0
    # The channel keeps private copies of fds 0 and 1 (not inherited by what the submission
    # starts); its own prints go to stderr, reading stdin gets end-of-file.
    channel_in, channel_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.dont_write_bytecode = True
    wire = _load_wire()
    import numpy  # noqa: F401  (imported before the memory limit, as twingrad's own cost)

    _limit_resources(memory_limit)
    saw_twingrad = _watch_for_twingrad()
    runner = Runner(root, wire)
    while True:
        try:
            length = wire.parse_prefix(_read_exactly(channel_in, wire.PREFIX_SIZE))
            request, arrays = wire.unpack(_read_exactly(channel_in, length))
        except (EOFError, OSError):
            return 0
        try:
            answer, out = runner.handle(request, arrays)
        except MemoryError:
            answer, out = {"ok": False, "error": {"type": "MemoryError", "message": "", "frames": []}}, []
        answer["id"] = request.get("id")
        answer["twingrad"] = bool(saw_twingrad) or any(name == "twingrad" or name.startswith("twingrad.")
                                                       for name in sys.modules)
        try:
            message = wire.pack(answer, out)
        except (TypeError, ValueError) as exc:
            message = wire.pack({"id": request.get("id"), "ok": False, "twingrad": answer["twingrad"],
                                 "error": {"type": "Unsendable", "message": str(exc)[:500], "frames": []}}, [])
        _write_all(channel_out, message)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


if __name__ == "__main__":
    sys.exit(main())
