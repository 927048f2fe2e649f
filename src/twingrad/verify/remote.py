"""The judge's end of the channel: a :class:`RemoteCaller` that calls a submission in its runner.

It has the interface of :class:`~.calling.Caller`, so every check in
:mod:`.functions`, :mod:`.stateful` and :mod:`.network` runs unchanged on a
submission in another process. What comes back is believed only as values:
a message that is malformed, oversized or late ends the runner, and the
function being checked gets an ``error`` (:class:`RunnerLost`), never the
grader a crash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import select
import time
import weakref

import numpy as np

from . import wire
from .calling import UserError, describe_error, stub

class RunnerLost(Exception):
    """The runner timed out, died, or broke the protocol; every later call fails the same way."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Remote:
    """An object that stays in the runner (a cache, a model), known by its path in the runner's results."""

    def __init__(self, type_name: str | None, ref: tuple):
        self.type_name, self.ref = type_name, ref

    def __repr__(self) -> str:
        return f"<{self.type_name or 'object'} in the submission's process>"


class RemoteTuple(tuple):
    ref: tuple = ()


class RemoteList(list):
    ref: tuple = ()


class RemoteDict(dict):
    ref: tuple = ()


_CONTAINERS = {tuple: RemoteTuple, list: RemoteList, dict: RemoteDict}


def _container(value, path):
    wrapped = _CONTAINERS[type(value)](value)
    wrapped.ref = path
    return wrapped


@dataclasses.dataclass(frozen=True)
class Planned:
    """In a :meth:`RemoteCaller.prefetch` plan: part ``path`` of the result of the plan's call ``index``."""

    index: int
    path: tuple = ()


class _ArgumentEncoder(wire.Encoder):
    """Arrays and plain values by value; what came from the runner by reference."""

    def __init__(self, refs: dict, planned: list | None = None):
        super().__init__()
        self.refs = refs  # id(array) -> (weak reference, path in the runner)
        self.planned = planned  # the request ids of a plan's calls

    def encode(self, value, path=(), depth=0):
        ref = getattr(value, "ref", None)
        if isinstance(value, (Remote, RemoteTuple, RemoteList, RemoteDict)) and ref:
            return {"$r": list(ref)}
        if isinstance(value, np.ndarray) and id(value) in self.refs:
            alive, where = self.refs[id(value)]
            if alive() is value:
                return {"$r": list(where)}
        if isinstance(value, Planned):
            return {"$r": [self.planned[value.index], *value.path]}
        return super().encode(value, path, depth)


def _request_key(body: dict, arrays) -> str:
    """What identifies a call: its target and arguments, arrays included (not its id)."""
    digest = hashlib.blake2b(json.dumps([body["target"], body["args"], body["kwargs"]], sort_keys=True).encode(),
                             digest_size=16)
    for array in arrays:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _shift(value, offset: int):
    """``value`` with its array indices moved by ``offset`` (a batch's parts share one list of arrays)."""
    if isinstance(value, dict):
        if "$a" in value:
            return {**value, "$a": int(value["$a"]) + int(offset)}
        return {k: _shift(v, offset) for k, v in value.items()}
    if isinstance(value, list):
        return [_shift(v, offset) for v in value]
    return value


class Channel:
    """Framed requests and answers over the runner's stdin and stdout, every wait bounded by a deadline."""

    def __init__(self, runner):
        self.runner = runner
        self.write_fd, self.read_fd = runner.stdin.fileno(), runner.stdout.fileno()
        os.set_blocking(self.write_fd, False)
        os.set_blocking(self.read_fd, False)

    def exchange(self, header: dict, arrays: list, deadline: float) -> tuple[dict, list]:
        self._write(wire.pack(header, arrays), deadline)
        length = wire.parse_prefix(self._read(wire.PREFIX_SIZE, deadline))
        return wire.unpack(self._read(length, deadline))

    def _wait(self, fd: int, for_write: bool, deadline: float) -> None:
        left = deadline - time.monotonic()
        ready = select.select([], [fd], [], max(0.0, left)) if for_write else select.select([fd], [], [], max(0.0, left))
        if not any(ready):
            raise TimeoutError

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            self._wait(self.write_fd, True, deadline)
            try:
                view = view[os.write(self.write_fd, view):]
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError):
                raise EOFError from None

    def _read(self, size: int, deadline: float) -> bytes:
        chunks, left = [], size
        while left:
            self._wait(self.read_fd, False, deadline)
            try:
                chunk = os.read(self.read_fd, min(left, 2**20))
            except BlockingIOError:
                continue
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


class RemoteCaller:
    """Calls the functions of one submission in its runner; the interface of :class:`~.calling.Caller`.

    Parameters
    ----------
    connection : Channel
        To the runner.
    home : callable
        ``home(name) -> role``: the module a CS231n name is looked up in first.
    memory_limit_mb : int or None
        Named in the message of a MemoryError.
    """

    def __init__(self, connection: Channel, home, memory_limit_mb: int | None = None):
        self.connection = connection
        self.names: dict = {}  #: role -> {name: "function" or "class"}, once loaded
        self.home = home
        self.memory_limit_mb = memory_limit_mb
        self.deadline = float("inf")
        self.lost: RunnerLost | None = None
        self.uses_twingrad = False
        self.module = None  # no module object on this side
        self._next_id = 0
        self._prefetched: dict = {}  #: request key -> (id, answer, arrays), see prefetch
        self._refs: dict = {}  #: id(array) -> (weak reference, path): arrays the runner sent, passed back by reference
        self._pending: dict = {}  #: "reset", "seed": what the next request carries

    def load(self, modules: dict, paths: list) -> dict:
        """Import the submission's modules (role -> dotted name) in the runner; role -> its answer."""
        header, _ = self._send({"op": "import", "modules": modules, "paths": paths})
        answers = header.get("modules")
        if not isinstance(answers, dict) or set(answers) != set(modules):
            raise self._lose("sent malformed data (no answer for its modules)")
        for role, answer in answers.items():
            names = answer.get("names") if isinstance(answer, dict) else None
            if isinstance(answer, dict) and answer.get("ok") is True and isinstance(names, dict) and all(
                    isinstance(k, str) and v in ("function", "class") for k, v in names.items()):
                self.names[role] = names
            elif not (isinstance(answer, dict) and answer.get("ok") is False and isinstance(answer.get("error"), dict)):
                raise self._lose("sent malformed data (a malformed import answer)")
        return answers

    # -- the Caller interface --------------------------------------------------------------

    def role_of(self, name: str) -> str | None:
        home = self.home(name)
        if name in self.names.get(home, {}):
            return home
        return next((role for role, names in self.names.items() if name in names), None)

    def has(self, name: str) -> bool:
        return self.role_of(name) is not None

    def kind(self, name: str) -> str | None:
        role = self.role_of(name)
        return self.names[role][name] if role else None

    def __call__(self, name: str, *args, **kwargs):
        return self._call(name, {"role": self.role_of(name), "attr": name}, args, kwargs)

    def invoke(self, name: str, function, *args, **kwargs):
        """Call ``function`` (a :class:`Remote` or a CS231n name), ``name`` in messages."""
        if isinstance(function, str):
            return self(function, *args, **kwargs)
        return self._call(name, {"ref": list(function.ref)}, args, kwargs)

    def method(self, name: str, obj: Remote, attr: str, *args, **kwargs):
        """``obj.attr(*args, **kwargs)`` in the runner (``attr`` may be dotted: ``"params.update"``)."""
        return self._call(name, {"ref": list(obj.ref), "attr": attr}, args, kwargs)

    def get(self, name: str, obj: Remote, attr: str, default=None):
        try:
            return self._request(name, {"op": "get", "target": {"ref": list(obj.ref), "attr": attr}})
        except UserError:
            return default

    def signature(self, name: str) -> set:
        names = self._request(name, {"op": "signature", "target": {"role": self.role_of(name), "attr": name}})
        return set(names) if isinstance(names, list) and all(isinstance(n, str) for n in names) else set()

    def defaults(self, name: str) -> dict:
        """The parameters of ``name`` whose default is a plain number or bool, with it."""
        found = self._request(name, {"op": "signature", "target": {"role": self.role_of(name), "attr": name},
                                     "defaults": True})
        if not isinstance(found, dict):
            return {}
        return {k: v for k, v in found.items() if isinstance(k, str) and type(v) in (int, float, bool)}

    def seed_global(self, seed: int) -> None:
        self._pending["seed"] = int(seed)  # numpy's global seed, set in the runner before its next request

    def reset(self) -> None:
        """Forget the results of earlier functions, here and (with the next request) in the runner."""
        self._prefetched.clear()
        self._refs.clear()
        self._pending["reset"] = True

    # -- requests ---------------------------------------------------------------------------

    def _call(self, name, target, args, kwargs):
        encoder = _ArgumentEncoder(self._refs)
        body = {"op": "call", "target": target, "args": encoder.encode(list(args)),
                "kwargs": encoder.encode(dict(kwargs))}
        answer_args = []
        value = self._request(name, body, encoder.arrays, answer_args)
        for sent, after in zip(args, answer_args):
            if type(sent) is dict and isinstance(after, dict):
                sent.clear()  # the submission writes into its param dicts (running averages): mirror that
                sent.update(after)
        return value

    def prefetch(self, calls: list) -> None:
        """Send the calls a check is about to make, all in one message; their answers wait here.

        ``calls`` holds ``(name, args)`` pairs in the order the check makes them;
        an argument ``Planned(k, path)`` stands for a part of the k-th call's result
        (a forward's cache, passed to its backward). When the check then makes a
        call identical to a planned one, its answer is taken from here: one round
        trip for all cases of a function instead of two per case.
        """
        if self.lost or not calls or "seed" in self._pending:
            return
        ids = [str(self._next_id + 1 + k) for k in range(len(calls))]
        parts, arrays = [], []
        for k, (name, args) in enumerate(calls):
            encoder = _ArgumentEncoder(self._refs, planned=ids)
            part = {"op": "call", "target": {"role": self.role_of(name), "attr": name},
                    "args": encoder.encode(list(args)), "kwargs": encoder.encode({})}
            parts.append({**part, "id": ids[k], "_key": _request_key(part, encoder.arrays)})
            arrays.append(encoder.arrays)
        self._next_id += len(calls)
        flat = [a for group in arrays for a in group]
        offsets = np.cumsum([0] + [len(group) for group in arrays])
        for part, offset in zip(parts, offsets):
            part["args"], part["kwargs"] = _shift(part["args"], offset), _shift(part["kwargs"], offset)
        keys = [part.pop("_key") for part in parts]
        header, out = self._send({"op": "batch", "requests": parts}, flat)
        answers = header.get("answers")
        if not isinstance(answers, list) or len(answers) != len(parts):
            raise self._lose("sent malformed data (a batch answered in part)")
        for key, request_id, answer in zip(keys, ids, answers):
            if isinstance(answer, dict):
                self._prefetched[key] = (request_id, answer, out)

    def _request(self, name, body, arrays=(), answer_args=None):
        key = _request_key(body, arrays) if body["op"] == "call" and "seed" not in self._pending else None
        if key in self._prefetched:
            request_id, header, out = self._prefetched.pop(key)
        else:
            header, out = self._send(body, list(arrays))
            request_id = str(self._next_id)  # the runner keeps the result under the request's id
        if not header.get("ok"):
            error = header.get("error")
            if not isinstance(error, dict):
                raise self._lose("sent malformed data (an answer without a result)")
            if error.get("not_implemented"):
                raise stub(f"{name} raises NotImplementedError: not implemented yet")
            raise UserError(describe_error(name, error, self.memory_limit_mb))
        try:
            value = self._decode(header.get("value"), out, (request_id,))
            self._remember_arrays(value, (request_id,))
            if answer_args is not None:
                answer_args += [self._decode(a, out, ("a" + request_id, i))  # the arguments, under "a" + id
                                for i, a in enumerate(header.get("args") or [])]
        except wire.Malformed as exc:
            raise self._lose(f"sent malformed data ({exc})") from None
        return value

    def _decode(self, value, arrays, path: tuple):
        return wire.decode(value, arrays, Remote, _container, path)

    def _remember_arrays(self, value, path: tuple, depth: int = 0) -> None:
        """Note where each array of a result sits in the runner: passed back, it goes by reference
        (a ReLU's cache is often the bare input array), as the same object would in one process."""
        if isinstance(value, np.ndarray) and value.ndim:
            self._refs[id(value)] = (weakref.ref(value), path)
        elif isinstance(value, (tuple, list)) and depth < 3:
            for i, item in enumerate(value):
                self._remember_arrays(item, path + (i,), depth + 1)

    def _send(self, header: dict, arrays: list | None = None) -> tuple[dict, list]:
        if self.lost:
            raise self.lost
        self._next_id += 1
        header = {**header, **self._pending, "id": str(self._next_id)}
        self._pending = {}
        try:
            answer, out = self.connection.exchange(header, arrays or [], self.deadline)
        except TimeoutError:
            raise self._lose("timeout") from None
        except EOFError:
            raise self._lose("died") from None
        except wire.Malformed as exc:
            raise self._lose(f"sent malformed data ({exc})") from None
        if answer.get("id") != header["id"]:
            raise self._lose("sent malformed data (an answer to another request)")
        self.uses_twingrad = self.uses_twingrad or answer.get("twingrad") is True
        return answer, out

    def _lose(self, why: str) -> RunnerLost:
        self.lost = RunnerLost(why)
        return self.lost

