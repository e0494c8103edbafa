"""Looking inside pickles without unpickling them.

A pickle is a small program: ``GLOBAL``/``STACK_GLOBAL`` import any callable and
``REDUCE`` calls it, so loading one runs whatever its author chose. modelport never
unpickles a file to find out what it is. Instead it walks the opcodes with
:mod:`pickletools` (which only decodes them) and collects the names the pickle would
import. That is enough to tell a scikit-learn joblib file from a PyTorch checkpoint,
and to show a user *what* a refused file would have imported (``posix.system``…).

The scan is for recognition and messages, never a security gate on its own: a pickle
is loaded only with explicit trust, whatever the scan says (scanners are bypassable).

Example:
    >>> import pickle, collections
    >>> scan_pickle(pickle.dumps(collections.OrderedDict())).globals
    ('collections.OrderedDict',)
"""

from __future__ import annotations

import io
import pickletools
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

#: How much of a file recognition reads at most.
SNIFF_BYTES = 4 << 20

_STRING_OPS = {
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
}
_NO_PUSH = {"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "PROTO", "FRAME", "STOP", "POP", "MARK"}


@dataclass(frozen=True, slots=True)
class PickleScan:
    """The imports a pickle stream would perform (``module.name``), in order of appearance.

    ``complete`` is False when the stream could not be decoded to its STOP opcode (a
    truncated file, or joblib's raw array bytes interleaved with the pickle); ``unknown``
    counts imports whose target could not be determined statically.
    """

    globals: tuple[str, ...]
    complete: bool
    unknown: int = 0

    def mentions(self, *prefixes: str) -> bool:
        return any(g == p or g.startswith(p + ".") for g in self.globals for p in prefixes)

    def shown(self, limit: int = 8) -> str:
        """The imports for a message, unusual ones (not numpy/sklearn/torch…) first."""
        usual = ("numpy.", "sklearn.", "joblib.", "torch.", "collections.", "scipy.")
        ordered = sorted(self.globals, key=lambda g: g.startswith(usual))
        text = ", ".join(ordered[:limit]) or "nothing readable"
        if len(ordered) > limit:
            text += f" and {len(ordered) - limit} more"
        if not self.complete:
            text += " (the scan stopped early; there may be more)"
        return text


def is_pickle_header(head: bytes) -> bool:
    """True for a binary pickle (protocol 2–5) header."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def scan_pickle(data: bytes, max_ops: int = 2_000_000) -> PickleScan:
    """Collect the globals a pickle would import, decoding opcodes only."""
    found: list[str] = []
    memo: dict[int, object] = {}
    recent: list[object] = []  # values pushed recently (strings or None)
    unknown = 0
    complete = False
    try:
        for n, (op, arg, _pos) in enumerate(pickletools.genops(io.BytesIO(data))):
            if n >= max_ops:
                break
            name = op.name
            if name in ("GLOBAL", "INST"):
                mod_name, _, attr_name = str(arg).partition(" ")
                found.append(f"{mod_name}.{attr_name}")
                recent.append(None)
            elif name == "STACK_GLOBAL":
                mod, attr = (recent[-2], recent[-1]) if len(recent) >= 2 else (None, None)  # type: ignore[assignment]
                if isinstance(mod, str) and isinstance(attr, str):
                    found.append(f"{mod}.{attr}")
                else:
                    unknown += 1
                    found.append("?")
                recent.append(None)
            elif name in ("EXT1", "EXT2", "EXT4"):
                unknown += 1
                found.append("?")
                recent.append(None)
            elif name in _STRING_OPS:
                recent.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                recent.append(memo.get(int(str(arg))) if arg is not None else None)
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(str(arg))] = recent[-1] if recent else None
            elif name == "STOP":
                complete = True
                break
            elif name not in _NO_PUSH:
                recent.append(None)
            if len(recent) > 64:
                del recent[:-8]
    except Exception:  # genops raises ValueError and friends on garbage; any is "incomplete"
        complete = False
    return PickleScan(tuple(dict.fromkeys(found)), complete, unknown)


def read_head(path: Path, n: int = SNIFF_BYTES) -> bytes:
    with path.open("rb") as f:
        return f.read(n)


#: First bytes of a pickle (protocol 2-5) or of joblib's zlib/gzip compression.
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"\x1f\x8b", b"x")


def joblib_stream(head: bytes) -> bytes | None:
    """The (start of the) pickle stream in a joblib/pickle file, decompressing zlib/gzip.

    Returns None when the bytes are neither a pickle nor a compressed one.
    """
    if is_pickle_header(head):
        return head
    for wbits in (zlib.MAX_WBITS | 32, zlib.MAX_WBITS):  # gzip or zlib (joblib's compressors)
        if head[:2] in (b"\x1f\x8b", b"x\x01", b"x^", b"x\x9c", b"x\xda"):
            try:
                d = zlib.decompressobj(wbits)
                out = d.decompress(head, SNIFF_BYTES)
            except zlib.error:
                continue
            if is_pickle_header(out):
                return out
    return None


def zip_names(path: Path) -> list[str] | None:
    """The member names of a zip file, or None if it is not a (readable) zip."""
    try:
        if read_head(path, 4) != b"PK\x03\x04":
            return None
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return None


def describe_file(path: Path) -> str:
    """A short description of what a file looks like, for "unsupported format" errors."""
    if path.is_dir():
        if (path / "MLmodel").is_file():
            return "an MLflow model directory (use: modelport import mlflow)"
        if (
            any((p / "config.pbtxt").is_file() for p in path.iterdir() if p.is_dir())
            or (path / "config.pbtxt").is_file()
        ):
            return "a Triton model repository (use: modelport import triton)"
        return "a directory"
    try:
        head = read_head(path)
    except OSError as e:
        return f"an unreadable file ({e.strerror})"
    if not head:
        return "an empty file"
    stream = joblib_stream(head)
    if stream is not None:
        return f"a pickle that would import {scan_pickle(stream).shown(6)}"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive of no known model layout"
    if head.lstrip()[:1] in (b"{", b"["):
        return "a JSON or UBJSON document of no known model layout"
    return "an unrecognised binary or text file"
