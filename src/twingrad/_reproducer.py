"""Python source that replays a failed :func:`twingrad.testing.assert_layer_matches`.

A property test fails on inputs hypothesis drew; the message must let the
reader rerun exactly that call outside the test run. The snippet imports the
functions by name where they can be imported, writes small arrays inline with
the shortest digits that read back exactly, and saves larger
ones to an ``.npz`` file that the snippet loads.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile

import numpy as np

INLINE_ELEMENTS = 64  #: arrays up to this size are written into the snippet; larger ones go to a file


def _import_line(func, alias: str) -> str:
    """``from module import name as alias``, or a line telling the reader what to paste."""
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
    where = ""
    code = getattr(func, "__code__", None)
    if code is not None:
        where = f" (defined at {code.co_filename}:{code.co_firstlineno})"
    if not module or "<" in qualname or "." in qualname or module == "__main__":
        return f"{alias} = ...  # paste {qualname or type(func).__name__}{where} here"
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    line = f"from {module} import {qualname} as {alias}"
    if not found and code is not None:
        line += f"  # put {os.path.dirname(code.co_filename)} on sys.path"
    return line


class _Arrays:
    """Arrays too large to inline, collected for one ``.npz`` file."""

    def __init__(self):
        self.saved: dict[str, np.ndarray] = {}

    def literal(self, value, name: str) -> str:
        if isinstance(value, np.ndarray):
            if value.size > INLINE_ELEMENTS:
                key = f"a{len(self.saved)}"
                self.saved[key] = value
                return f"saved[{key!r}]"
            # tolist() gives Python floats, whose repr is the shortest text that reads back exactly
            return f"np.array({value.tolist()!r}, dtype=np.{value.dtype.name})"
        if isinstance(value, np.generic):
            return f"np.{value.dtype.name}({value.item()!r})"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k!r}: {self.literal(v, f'{name}.{k}')}" for k, v in value.items()) + "}"
        if isinstance(value, (list, tuple)):
            items = [self.literal(v, f"{name}[{i}]") for i, v in enumerate(value)]
            return ("[" + ", ".join(items) + "]") if isinstance(value, list) else ("(" + ", ".join(items) + ",)")
        return repr(value)

    def write(self) -> str | None:
        """Save the collected arrays atomically; return the file's path, or None when there were none."""
        if not self.saved:
            return None
        fd, path = tempfile.mkstemp(prefix="twingrad-reproduce-", suffix=".npz")
        os.close(fd)
        partial = path + ".tmp"
        try:
            with open(partial, "wb") as f:
                np.savez(f, **self.saved)
            os.replace(partial, path)
        except OSError:
            return None
        return path


def snippet(forward, backward, twin, kinks, *, inputs: dict, wrt: list, mode: str, seed: int, dout) -> str:
    """The lines to paste, indented by four spaces."""
    arrays = _Arrays()
    inputs_text = arrays.literal(dict(inputs), "inputs")
    dout_text = arrays.literal(dout, "dout") if dout is not None else None
    lines = ["import numpy as np", "from twingrad.testing import assert_layer_matches",
             _import_line(forward, "forward")]
    call = ["forward", "backward" if backward is not None else "None"]
    if backward is not None:
        lines.append(_import_line(backward, "backward"))
    if twin is not None:
        lines.append(_import_line(twin, "twin"))
        call.append("twin=twin")
    if kinks is not None:
        lines.append(_import_line(kinks, "kinks"))
        call.append("kinks=kinks")
    path = arrays.write()
    if arrays.saved:
        lines.append(f"saved = np.load({path!r})" if path else "saved = ...  # the inputs could not be saved")
    lines.append(f"inputs = {inputs_text}")
    call += ["inputs=inputs", f"wrt={list(wrt)!r}", f"mode={mode!r}", f"seed={seed!r}"]
    if dout_text is not None:
        call.append(f"dout={dout_text}")
    lines.append(f"assert_layer_matches({', '.join(call)})")
    return "\n".join("    " + line for line in lines)
