"""Is there private-key material in these bytes? The key guard's rules, as pure functions.

push-image's build-context and image-layer scans, the image-config scan, the task-definition check
(register-task, render, diff, doctor, `init --from-family`) and the template's env() all ask here,
so they agree on what a key is. Nothing here reads a file by name, talks to an engine or prints.

What counts as a key:
- a PEM private-key block: `-----BEGIN … PRIVATE KEY-----` followed by a base64 body (lines split
  by newlines or by the two characters `\\n` of a JSON string), ending in the matching END line or
  running for at least `MIN_BODY` characters without one (a cut-off key still leaks);
- JSON that parses as a service-account key (`"type": "service_account"` with a `private_key`),
  for small files, whatever its private_key holds;
- a DER private key (PKCS#8 RSA/EC/EdDSA, PKCS#1 RSA, SEC1 EC, OpenSSH's binary form): raw, as the
  base64 body of a PEM key without its armour lines (anywhere in text), or hex-encoded.

Files (a build context's, an image layer's) are also refused as Google credential files
(`stream_has_secret`, `credential_file_name`): small JSON whose "type" is `authorized_user`,
`external_account`, `external_account_authorized_user` or `impersonated_service_account`, and
files named `gha-creds-*.json` whatever they hold. Strings (task definitions, build arguments,
image config) keep the key rules only: keyless mode's own `external_account` configuration
reaches the task through its environment.

Seen through, up to `MAX_DEPTH` wrappings deep: gzip, bzip2 and xz compression; tar archives
(each member on its own); a file that is base64 text (wrapped or not); base64 runs inside other
text (the encoded BEGIN/END marker); URL-encoding (`%20`, `+`, `%5Cn`, also twice: Jinja's
`urlencode`, form posts); hex (plain, upper case, `xxd -p` lines, `aa:bb` pairs); UTF-16 and UTF-32
text; any file size (streamed in windows).
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
import contextlib
import gzip
import io
import lzma
import posixpath
import re
import tarfile
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from gcpfargate.keymaterial.keyfile import looks_like_credentials, looks_like_key

# Bump whenever what counts as a key, or what is seen through, changes. 4: image layers' files are
# searched whatever their size (they were skipped past MAX_EXPANDED, so a layer cached clean under 3
# may hold a key in a larger file). 5: Google credential files other than keys count; DER keys (raw,
# armourless base64, hex), URL-encoding, hex.
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
# Executable formats (ELF, PE, Mach-O, fat Mach-O / Java class, ar archives): programs and
# libraries.
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
# Characters that continue a base64 run: a DER key's encoding starts where none precedes it.
_BASE64_RUN_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
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
# A DER key in base64 text (the body of a PEM key without its armour lines) starts with one of
# these (`30 81`/`30 82` SEQUENCE headers: MI; SEC1 P-256 `30 77`: MH; Ed25519/X25519 `30 2e`: MC;
# Ed448/X448 and short EC keys: ME; OpenSSH: b3Bl). Each start is decoded a little way and its
# bytes searched for a signature: a handful of short searches, not one per signature.
_DER_B64_STARTS = (b"MI", b"MH", b"MC", b"ME", b"b3Bl")
_DER_B64_HEAD = 32  # base64 characters decoded at each start: 24 bytes hold every signature
# The fixed bytes at the start of a DER private key, after its outer SEQUENCE header, as one
# search; each is specific enough not to occur by chance in other data. All start with `02 01`
# (the version), a literal start that keeps the search fast (an alternative without it, such as
# OpenSSH's magic, makes it 20 times slower, so that one is searched on its own):
# - PKCS#8 version 0, then rsaEncryption (NULL parameters) and the OCTET STRING;
# - PKCS#8 version 0, then id-ecPublicKey and the curve's OID tag;
# - PKCS#8 version 0, then Ed25519 / X25519 / Ed448 / X448 (1.3.101.110-113);
# - PKCS#1 version 0, then a 2048-, 3072- or 4096-bit modulus;
# - SEC1 version 1, then a 32- or 48-byte (P-256, P-384) private key.
_DER_RAW = re.compile(
    rb"\x02\x01(?:\x00(?:\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01\x05\x00\x04"
    rb"|\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06|\x30\x05\x06\x03\x2b\x65[\x6e-\x71]\x04"
    rb"|\x02\x82(?:\x01[\x01\x81]|\x02\x01)\x00)|\x01\x04[\x20\x30])"
)
_OPENSSH = b"openssh-key-v1\0"
# Hex text: pieces of the PEM marker ("PRIVATE" appears twice, so one survives `xxd -p`'s line
# breaks) and of the DER signatures (in the first 60 hex digits, so on the first line); digits
# only, so the same in either case. A hit is confirmed by decoding the hex around it.
_HEX_GATES = (
    b"PRIVATE".hex().encode(),
    b"02010",  # the version of PKCS#8 (RSA, EC, EdDSA), PKCS#1 and SEC1 keys
)
_HEX_RUN = re.compile(rb"[0-9a-fA-F]{2}(?:(?:\r?\n|[ :])?[0-9a-fA-F]{2}){15,}")
_HEX_SEPARATORS = b" :\r\n"
# URL-encoded (once or twice): the marker's space as %20, + or %2520.
_URL_MARKER = re.compile(rb"PRIVATE(?:%20|\+|%2520)KEY")


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


def _der_base64(window: bytes) -> bool:
    """A base64 run in `window` that starts with a DER private key. One memchr for "M" (or "b" of
    OpenSSH's b3Bl) per candidate, and a run is skipped whole: a few calls per base64 line."""
    for letter in (b"M", b"b3Bl"):
        position = window.find(letter)
        while position != -1:
            if position == 0 or window[position - 1] not in _BASE64_RUN_BYTES:
                head = window[position : position + _DER_B64_HEAD]
                if head[:2] in _DER_B64_STARTS or head[:4] in _DER_B64_STARTS:
                    try:
                        decoded = base64.b64decode(head[: len(head) // 4 * 4], validate=True)
                    except binascii.Error:
                        decoded = b""
                    # The signature follows a 2-, 3- or 4-byte SEQUENCE header.
                    if decoded.startswith(_OPENSSH) or any(
                        _DER_RAW.match(decoded, offset) for offset in (2, 3, 4)
                    ):
                        return True
            end = _NOT_BASE64.search(window, position + 1)
            if end is None:
                break
            position = window.find(letter, end.end())
    return False


def _hex_decoded(text: bytes) -> list[bytes]:
    """`text` (hex digits with xxd's line breaks or spaces) decoded at both pair alignments."""
    digits = text.translate(None, _HEX_SEPARATORS)
    decoded = []
    for start in (0, 1):
        usable = digits[start : start + (len(digits) - start) // 2 * 2]
        with contextlib.suppress(ValueError):
            decoded.append(bytes.fromhex(usable.decode("ascii")))
    return decoded


def _hex_has_key(window: bytes) -> bool:
    """Hex text in `window` that decodes to key material: a DER signature right at a version
    gate (a few bytes decoded there), or a PEM block in the hex run around "PRIVATE"."""
    position = window.find(_HEX_GATES[1])
    while position != -1:
        around = window[max(0, position - 12) : position + 48]
        if any(_DER_RAW.search(decoded) for decoded in _hex_decoded(around)):
            return True
        position = window.find(_HEX_GATES[1], position + 1)
    position = window.find(_HEX_GATES[0])
    if position != -1:
        # A PEM block is ~3.4 KB, ~7 KB in hex: the run around the first "PRIVATE" holds it.
        around = window[max(0, position - 16384) : position + 16384]
        for run in _HEX_RUN.finditer(around):
            if any(text_has_pem(decoded) for decoded in _hex_decoded(run.group())):
                return True
    return False


def _url_has_key(window: bytes) -> bool:
    """URL-encoded text (once or twice) that decodes to a PEM block."""
    decoded = window
    for _ in range(2):
        decoded = urllib.parse.unquote_to_bytes(decoded.replace(b"+", b" "))
        if _MARKER in decoded and text_has_pem(decoded):
            return True
    return False


def _window_has_key(window: bytes, program: bool = False, nested: bool = False) -> bool:
    if program:
        # Compiled programs and libraries carry their own test keys (libgnutls's self-tests hold a
        # dozen PEM keys): in them only a service-account key's JSON form counts.
        return _SA_PRIVATE_KEY in window and _SA_JSON.search(window) is not None
    # One search for what the PEM marker and its URL-encoded forms share.
    if b"KEY-----" in window:
        if _MARKER in window and text_has_pem(window):
            return True
        if _URL_MARKER.search(window) and _url_has_key(window):
            return True
    if b"\0" in window:
        # A raw DER key holds NULs (its version, 02 01 00; OpenSSH's magic), so only binary
        # windows are searched for one ...
        if _DER_RAW.search(window) or _OPENSSH in window:
            return True
    else:
        # ... and the text encodings (armourless base64, hex) only text ones.
        if _der_base64(window):
            return True
        if not nested and any(gate in window for gate in _HEX_GATES) and _hex_has_key(window):
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
    file is not wrapped in anything this module sees through. `whole` reads the file from its
    start."""
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
