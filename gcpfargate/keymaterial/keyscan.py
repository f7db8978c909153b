"""Is there private-key material in these bytes? The key guard's rules, as pure functions.

push-image's build-context and image-layer scans, the image-config scan, the task-definition check
(register-task, render, diff, doctor, `init --from-family`) and the template's env() all ask here,
so they agree on what a key is. Nothing here reads a file by name, talks to an engine or prints.

What counts as a key:
- a PEM private-key block: `-----BEGIN … PRIVATE KEY-----` followed by a base64 body (lines split
  by newlines or by the two characters `\\n` of a JSON string), ending in the matching END line or
  running for at least `MIN_BODY` characters without one (a cut-off key still leaks);
- JSON that parses as a service-account key (`"type": "service_account"` with a `private_key`),
  for small files, whatever its private_key holds.

Files (a build context's, an image layer's) are also refused as Google credential files
(`stream_has_secret`, `credential_file_name`): small JSON whose "type" is `authorized_user`,
`external_account`, `external_account_authorized_user` or `impersonated_service_account`, and
files named `gha-creds-*.json` whatever they hold. Strings (task definitions, build arguments,
image config) keep the key rules only: keyless mode's own `external_account` configuration
reaches the task through its environment.

Seen through, up to `MAX_DEPTH` wrappings deep: gzip, bzip2 and xz compression; tar archives
(each member on its own); a file that is base64 text (wrapped or not); base64 runs inside other
text (the encoded BEGIN/END marker); UTF-16 and UTF-32 text; any file size (streamed in windows).
In compiled programs and libraries (ELF, PE, Mach-O), which carry their own test keys, only a
service-account key's JSON form counts, not a bare PEM block.
Not seen: encrypted or password-protected archives, zip and other formats not listed, keys split
into pieces that are joined at run time, and compressed data that expands past `MAX_EXPANDED`.

`RULES_VERSION` names this rule set: a cache of "scanned clean" results must be keyed by it.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import gzip
import io
import lzma
import posixpath
import re
import tarfile
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from gcpfargate.keymaterial.keyfile import looks_like_credentials, looks_like_key

# Bump whenever what counts as a key, or what is seen through, changes. 4: image layers' files are
# searched whatever their size (they were skipped past MAX_EXPANDED, so a layer cached clean under 3
# may hold a key in a larger file). 5: Google credential files other than keys count.
RULES_VERSION = 5
CHUNK = 1 << 20
# Longer than any PEM key block (RSA-8192 PKCS#8 is ~6.4 KB; x4 for UTF-32), so a block that
# straddles two reads is seen whole in the next window.
OVERLAP = 64 << 10
MIN_BODY = 64
MAX_DEPTH = 4
MAX_EXPANDED = 256 << 20  # decompressed bytes read per file, across all wrappings
MAX_JSON = 1 << 20  # whole-file JSON parsing (the service-account rule) only for files this small

_MARKER = b"PRIVATE KEY-----"
_BEGIN = re.compile(rb"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----")
# The body: base64, whitespace, JSON's \n and \r escapes, and RFC 1421 header lines (Proc-Type: …).
_BODY = re.compile(rb"(?:[A-Za-z0-9+/=\s]|\\[rn]|[A-Za-z-]{1,40}: [^\r\n\\]{0,200})*")
_END = re.compile(rb"-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----")
# Base64 text as tools write it: no spaces, lines split by newlines (standard or URL-safe alphabet).
# A service-account key's JSON: the private_key field holding a PEM block (escaped or not).
# (also as a string literal inside source code: quotes escaped once or twice).
_SA_PRIVATE_KEY = b"private_key"
_SA_JSON = re.compile(
    rb'private_key\\{0,3}"\s*:\s*\\{0,3}"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----'
)
# Executable formats (ELF, PE, Mach-O, fat Mach-O / Java class, ar archives): programs and libraries.
_PROGRAM_MAGIC = (
    b"\x7fELF",
    b"MZ",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
    b"!<arch>\n",
)
_BASE64_CHARS = re.compile(rb"[A-Za-z0-9+/=\r\n_-]*")
_URL_SAFE = bytes.maketrans(b"-_", b"+/")


def _base64_anchors(marker: bytes) -> list[bytes]:
    """The base64 text of `marker` at each of the three byte offsets it can start at, trimmed to
    the characters that depend on the marker alone."""
    anchors = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + marker)
        first = -(-8 * offset // 6)  # the first character made only of the marker's bits
        last = 8 * (offset + len(marker)) // 6
        anchors.append(encoded[first:last])
    return anchors


# In UTF-16/UTF-32 text (either byte order) the ASCII marker's letters are separated by NULs.
_WIDE = [
    b"\0".join(_MARKER[i : i + 1] for i in range(len(_MARKER))),
    b"\0\0\0".join(_MARKER[i : i + 1] for i in range(len(_MARKER))),
]
_B64 = _base64_anchors(_MARKER)


def text_has_pem(data: bytes) -> bool:
    """A PEM private-key block in `data` (plain text, or a JSON string's escaped form)."""
    for begin in _BEGIN.finditer(data):
        body = _BODY.match(data, begin.end())
        end = body.end() if body else begin.end()
        if _END.match(data, end) and end > begin.end():
            return True
        if sum(1 for char in data[begin.end() : end] if char not in b" \t\r\n\\") >= MIN_BODY:
            return True
    return False


def _window_has_key(window: bytes, program: bool = False) -> bool:
    if program:
        # Compiled programs and libraries carry their own test keys (libgnutls's self-tests hold a
        # dozen PEM keys): in them only a service-account key's JSON form counts.
        return _SA_PRIVATE_KEY in window and _SA_JSON.search(window) is not None
    if _MARKER in window and text_has_pem(window):
        return True
    # `b"Y" in` first: a one-byte search is a memchr, while the NUL-laced wide markers make a slow
    # search through NUL-heavy data (sparse files, model weights: ~40x slower than the rest).
    if (
        b"Y" in window
        and any(wide in window for wide in _WIDE)
        and text_has_pem(window.replace(b"\0", b""))
    ):
        return True
    # The encoded marker in a base64 run (a key pasted as base64 into a .env file, say).
    return any(anchor in window for anchor in _B64)


class _Chain(io.RawIOBase):
    """The bytes already read (`head`) followed by the rest of `stream`, as one readable stream.

    Every byte that passes is also searched as it is (`raw_hit`): a file that only looks wrapped
    (base64-like text, a damaged archive) is still searched for a plain key."""

    def __init__(self, head: bytes, stream: Any) -> None:
        self._head, self._stream, self._tail = head, stream, b""
        self.raw_hit = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        if self._head:
            size = min(len(target), len(self._head))
            data, self._head = self._head[:size], self._head[size:]
        else:
            data = self._stream.read(len(target))
        target[: len(data)] = data
        if data and not self.raw_hit:
            window = self._tail + bytes(data)
            self.raw_hit = _window_has_key(window)
            self._tail = window[-OVERLAP:]
        return len(data)

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class _Budget:
    """Decompressed bytes still allowed for one top-level file (a bomb must not run forever)."""

    def __init__(self) -> None:
        self.left = MAX_EXPANDED


def _read(stream: Any, size: int) -> bytes:
    """Up to `size` bytes; short only at the end of the stream."""
    parts, wanted = [], size
    while wanted > 0:
        data = stream.read(wanted)
        if not data:
            break
        parts.append(data)
        wanted -= len(data)
    return b"".join(parts)


# google-github-actions/auth's credential file: named so whatever it holds (its content changes
# with the action's version; the name is what the action documents).
_CREDENTIAL_FILE_NAME = re.compile(r"gha-creds-[^/]*\.json")


def credential_file_name(path: str) -> bool:
    """Whether a file at `path` is named as a CI credential file (`gha-creds-*.json`)."""
    return _CREDENTIAL_FILE_NAME.fullmatch(posixpath.basename(path)) is not None


def stream_has_secret(stream: BinaryIO | Any) -> bool:
    """`stream_has_key`, or a Google credential file other than a key (CREDENTIAL_TYPES): the
    test for a file of a build context or an image layer."""
    return stream_has_key(stream, credential_files=True)


def stream_has_key(
    stream: BinaryIO | Any,
    _depth: int = 0,
    _budget: _Budget | None = None,
    credential_files: bool = False,
) -> bool:
    """True when the readable `stream` holds key material (see the module docstring). Reads it in
    `CHUNK`-sized windows: memory stays flat whatever the size."""
    budget = _budget or _Budget()
    head = _read(stream, CHUNK)
    if not head:
        return False
    if _depth < MAX_DEPTH:
        chain = _Chain(head, stream)
        inner = _unwrap(head, io.BufferedReader(chain, CHUNK))
        if inner is not None:
            try:
                if any(
                    stream_has_key(each, _depth + 1, budget, credential_files) for each in inner
                ):
                    return True
            except (
                OSError,
                EOFError,
                ValueError,
                tarfile.TarError,
                lzma.LZMAError,
                binascii.Error,
            ):
                pass  # a damaged wrapping: the raw bytes are still searched, below
            chain.drain()
            return chain.raw_hit
    return _scan_windows(head, stream, budget if _depth else None, credential_files)


def has_key(data: bytes | str) -> bool:
    """`stream_has_key` for bytes (or text) already in memory."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    return stream_has_key(io.BytesIO(raw))


def _scan_windows(
    head: bytes, stream: Any, budget: _Budget | None, credential_files: bool = False
) -> bool:
    tail, chunk, first = b"", head, True
    program = head.startswith(_PROGRAM_MAGIC)
    while chunk:
        if budget is not None:
            budget.left -= len(chunk)
            if budget.left < 0:
                return False  # past MAX_EXPANDED: documented as not seen
        window = tail + chunk
        if _window_has_key(window, program):
            return True
        if first and len(chunk) < CHUNK and len(chunk) <= MAX_JSON:
            document = chunk.lstrip(b"\xef\xbb\xbf")
            if looks_like_key(document) or (credential_files and looks_like_credentials(document)):
                return True
        first = False
        tail = window[-OVERLAP:]
        chunk = _read(stream, CHUNK)
    return False


def _unwrap(head: bytes, whole: Any) -> Iterator[Any] | None:
    """Streams inside a wrapped file (decompressed, tar members, decoded base64); None when the
    file is not wrapped in anything this module sees through. `whole` reads the file from its start."""
    if head.startswith(b"\x1f\x8b"):
        return iter([gzip.GzipFile(fileobj=whole, mode="rb")])
    if head.startswith(b"BZh"):
        return iter([bz2.BZ2File(whole)])
    if head.startswith(b"\xfd7zXZ\x00"):
        return iter([lzma.LZMAFile(whole)])
    if head[257:262] == b"ustar":
        return _tar_members(whole)
    sample = head[:4096]
    if (
        len(sample.strip()) >= 32
        and _BASE64_CHARS.fullmatch(sample)
        and not sample.strip().isdigit()
    ):
        return iter([_Base64Reader(whole)])
    return None


def _tar_members(stream: Any) -> Iterator[Any]:
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            if member.isfile() and member.size:
                content = archive.extractfile(member)
                if content is not None:
                    yield content


class _Base64Reader(io.RawIOBase):
    """Decodes base64 text (standard or URL-safe alphabet, any line wrapping) as it is read."""

    def __init__(self, stream: Any) -> None:
        self._stream, self._pending, self._out = stream, b"", b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._out:
            data = self._stream.read(CHUNK)
            text = self._pending + data.translate(_URL_SAFE, b" \t\r\n\v\f=")
            if not data:
                if not text:
                    return 0
                text += b"=" * (-len(text) % 4)
                self._pending, cut = b"", len(text)
            else:
                cut = len(text) - len(text) % 4
                self._pending = text[cut:]
            try:
                self._out = base64.b64decode(text[:cut]) if cut else b""
            except binascii.Error:
                self._out = b""
            if not data and not self._out:
                return 0
        size = min(len(target), len(self._out))
        target[:size], self._out = self._out[:size], self._out[size:]
        return size


def key_text(text: str) -> bool:
    """For strings that should never mention a private key at all (a task definition's): the PEM
    marker alone is enough, or any key material `has_key` sees."""
    return "PRIVATE KEY-----" in text or has_key(text)


def key_paths(value: Any, where: str = "", is_key: Callable[[str], bool] = has_key) -> list[str]:
    """JSON paths (`containerDefinitions[0].command[2]`) of every string in `value`, at any depth,
    for which `is_key` is true; object keys count as strings too. Iterative: any depth is fine."""
    found: list[str] = []
    stack: list[tuple[str, Any]] = [(where, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if is_key(item):
                found.append(path or "the value")
        elif isinstance(item, dict):
            for key, child in item.items():
                name = str(key)
                if is_key(name):
                    name = "<a key>"  # the path goes into an error message: never the key itself
                    found.append(f"{path}.{name}" if path else name)
                stack.append((f"{path}.{name}" if path else name, child))
        elif isinstance(item, list | tuple):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
    return sorted(found)
