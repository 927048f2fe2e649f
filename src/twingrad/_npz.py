"""Read ``.npz`` archives from untrusted files with every size checked before it is read.

``np.load`` trusts an archive: a member's npy header may declare any shape (numpy
allocates it before reading) and a small compressed member may inflate to
gigabytes. Here each member's size is checked twice before a byte of it is
read: the size its zip header declares, then the shape and dtype its npy header
declares, both against a limit the caller gives per member name. Object arrays
(which need pickle) are refused, whatever the limit.
"""

from __future__ import annotations

import zipfile
import zlib
from typing import Callable

import numpy as np

#: npy headers are padded to at most a few KiB; numpy refuses more than 10000 bytes by default.
HEADER_BYTES = 10_000 + 128
MAX_MEMBERS = 100_000
_NPY_MAGIC, _PNG_MAGIC = b"\x93NUMPY", b"\x89PNG"


class ArchiveError(ValueError):
    """The file is not a well-formed ``.npz`` archive within the size limits."""


class _Verdict(Exception):
    """Carries a caller's refusal past the handler that turns reading errors into ArchiveError."""


def sniff(path) -> None:
    """Raise ArchiveError (or OSError) at once for a path that cannot be an ``.npz`` archive."""
    with open(path, "rb") as f:  # IsADirectoryError, FileNotFoundError, PermissionError pass through
        head = f.read(8)
    if head.startswith(_NPY_MAGIC):
        raise ArchiveError("a single .npy array, not an .npz archive")
    if head.startswith(_PNG_MAGIC):
        raise ArchiveError("a PNG image, not an .npz archive")
    if not head.startswith(b"PK"):
        raise ArchiveError("not an .npz (zip) archive: truncated, corrupt or another kind of file")


def member_sizes(archive: zipfile.ZipFile) -> dict[str, int]:
    """Member name (without ``.npy``) -> declared uncompressed size, from the zip's directory only."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ArchiveError(f"{len(infos)} members, more than the {MAX_MEMBERS} any checkpoint has")
    sizes = {}
    for info in infos:
        if not info.filename.endswith(".npy") or info.filename[:-4] in sizes:
            raise ArchiveError(f"unexpected member {info.filename!r}: an .npz holds one .npy per name")
        sizes[info.filename[:-4]] = info.file_size
    return sizes


def read_member(archive: zipfile.ZipFile, name: str, limit: int, kinds: str = "biuf") -> np.ndarray:
    """Read member ``name`` if it holds at most ``limit`` data bytes of a dtype kind in ``kinds``."""
    info = archive.getinfo(name + ".npy")
    if info.file_size > limit + HEADER_BYTES:
        raise ArchiveError(f"member {name!r} declares {info.file_size} bytes, more than the "
                           f"{limit} it can need")
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ArchiveError(f"member {name!r} has npy format version {version}")
        shape, fortran, dtype = read_header(f)
        if dtype.hasobject or dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
            expected = "a plain numeric array" if "U" not in kinds else "a string"
            raise ArchiveError(f"member {name!r} has dtype {dtype}, expected {expected} "
                               "(pickled objects are never loaded)")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if nbytes > limit:
            raise ArchiveError(f"member {name!r} declares shape {shape} of {dtype} ({nbytes} bytes), more than "
                               f"the {limit} it can need")
        raw = f.read(nbytes)
        if len(raw) != nbytes or f.read(1):  # reading to the end also makes zipfile check the CRC
            raise ArchiveError(f"member {name!r} holds {len(raw)} data bytes, its header says {nbytes}")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return array.copy()  # writable and owning its memory, like np.load's arrays


def read_one(path, name: str, limit: int, kinds: str = "biuf") -> dict:
    """``{name: array}`` for the one member ``name`` of the archive at ``path`` (``{}`` if it has none)."""
    sniff(path)
    try:
        with zipfile.ZipFile(path) as archive:
            if name not in member_sizes(archive):
                return {}
            return {name: read_member(archive, name, limit, kinds)}
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, ValueError,
            OSError) as err:
        raise ArchiveError(f"not a readable .npz archive (truncated or corrupt?): {type(err).__name__}: {err}") from None


def read_archive(path, limit_of: Callable[[str], int], first: str | None = None,
                 check_first: Callable[[np.ndarray, dict], None] | None = None) -> dict:
    """Every member of the ``.npz`` at ``path``, each checked against ``limit_of(name)`` before reading.

    ``first`` (a unicode member: the metadata) is read before the others, and
    ``check_first(first_array, declared_sizes)`` may then refuse the archive before
    anything else is read.
    Raises ArchiveError for anything malformed, OSError for a missing or unreadable path.
    """
    sniff(path)
    try:
        with zipfile.ZipFile(path) as archive:
            sizes = member_sizes(archive)
            arrays = {}
            order = sorted(sizes, key=lambda n: n != first)
            for name in order:
                if name == first:
                    arrays[name] = read_member(archive, name, limit_of(name), kinds="U")
                    if check_first is not None:
                        try:
                            check_first(arrays[name], sizes)
                        except ValueError as err:  # the caller's verdict, not a damaged file: pass it on as is
                            raise _Verdict(err) from None
                    continue
                arrays[name] = read_member(archive, name, limit_of(name))
            return arrays
    except _Verdict as verdict:
        raise verdict.args[0] from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError) as err:
        raise ArchiveError(f"not a readable .npz archive (truncated or corrupt?): {type(err).__name__}: {err}") from None
    except (ValueError, OSError) as err:
        if isinstance(err, ArchiveError):
            raise
        # zlib errors, bad npy headers, CRC mismatches: all mean a damaged file
        raise ArchiveError(f"not a readable .npz archive (truncated or corrupt?): {type(err).__name__}: {err}") from None
