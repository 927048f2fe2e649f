"""The judge's end of the channel: a :class:`RemoteCaller` that calls a submission in its runner.

It has the interface of :class:`~.calling.Caller`, so every check in
:mod:`.functions`, :mod:`.stateful` and :mod:`.network` runs unchanged on a
submission in another process. What comes back is believed only as values:
a message that is malformed, oversized or late ends the runner, and the
function being checked gets an ``error`` (:class:`RunnerLost`), never the
grader a crash.
"""

from __future__ import annotations

import os
import select
import time

from . import wire
from .calling import Stub, UserError, describe_error

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


class _ArgumentEncoder(wire.Encoder):
    """Arrays and plain values by value; what came from the runner by reference."""

    def encode(self, value, path=(), depth=0):
        ref = getattr(value, "ref", None)
        if isinstance(value, (Remote, RemoteTuple, RemoteList, RemoteDict)) and ref:
            return {"$r": list(ref)}
        return super().encode(value, path, depth)


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
            return self._request("get", name, {"target": {"ref": list(obj.ref), "attr": attr}})
        except UserError:
            return default

    def signature(self, name: str) -> set:
        names = self._request("signature", name, {"target": {"role": self.role_of(name), "attr": name}})
        return set(names) if isinstance(names, list) and all(isinstance(n, str) for n in names) else set()

    def seed_global(self, seed: int) -> None:
        self._send({"op": "seed", "seed": int(seed)})

    def reset(self) -> None:
        if self.lost is None:
            self._send({"op": "reset"})

    # -- requests ---------------------------------------------------------------------------

    def _call(self, name, target, args, kwargs):
        encoder = _ArgumentEncoder()
        body = {"target": target, "args": encoder.encode(list(args)), "kwargs": encoder.encode(dict(kwargs))}
        answer_args = []
        value = self._request("call", name, body, encoder.arrays, answer_args)
        for sent, after in zip(args, answer_args):
            if type(sent) is dict and isinstance(after, dict):
                sent.clear()  # the submission writes into its param dicts (running averages): mirror that
                sent.update(after)
        return value

    def _request(self, op, name, body, arrays=(), answer_args=None):
        header, out = self._send({"op": op, **body}, list(arrays))
        key = str(self._next_id)  # the runner keeps the result under the request's id, the arguments under "a" id
        if not header.get("ok"):
            error = header.get("error")
            if not isinstance(error, dict):
                raise self._lose("sent malformed data (an answer without a result)")
            if error.get("not_implemented"):
                raise Stub(f"{name} raises NotImplementedError: not implemented yet")
            raise UserError(describe_error(name, error, self.memory_limit_mb))
        try:
            value = self._decode(header.get("value"), out, (key,))
            if answer_args is not None:
                answer_args += [self._decode(a, out, ("a" + key, i)) for i, a in enumerate(header.get("args") or [])]
        except wire.Malformed as exc:
            raise self._lose(f"sent malformed data ({exc})") from None
        return value

    def _decode(self, value, arrays, path: tuple):
        return wire.decode(value, arrays, Remote, _container, path)

    def _send(self, header: dict, arrays: list | None = None) -> tuple[dict, list]:
        if self.lost:
            raise self.lost
        self._next_id += 1
        header = {**header, "id": str(self._next_id)}
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

