"""RSA-2048 keys made ahead, in a process that only gets the CPU nobody else wants.

Generating a 2048-bit RSA key costs 50-150 ms of CPU, and the suite's emulators issue well over a
thousand (every bootstrap, rotation and minted key): a few percent of the suite's CPU, paid while
the tests wait on it. The pool process runs at nice 19, so it makes keys in the time the cores are
idle (the suite's real-clock waits) and yields at once when they are not. `take()` never waits: an
empty pool means the emulator makes the key itself, as before. The keys are the same RSA keys
`rsa.generate_private_key` makes; they travel through a pipe, never a file, and are loaded without
cryptography's key check (their maker is this code; the check is a fifth of the cost).

Run as `python -m tests.stack.iam.keypool`: writes length-prefixed DER private keys to stdout until
the reader goes away (the pipe's buffer is the pool: ~50 keys; then the maker waits).
"""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
import threading

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

_LENGTH = struct.Struct(">I")


class KeyPool:
    def __init__(self, enabled: bool = True, niceness: int = 19) -> None:
        self.enabled = enabled
        self.niceness = niceness
        self._process: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._lock = threading.Lock()
        self.taken = 0  # keys the emulator took from the pool (the rest it made itself)

    def start(self) -> None:
        if not self.enabled or self._process is not None:
            return
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.stack.iam.keypool"],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: os.nice(self.niceness),
            env={**os.environ, "PYTHONPATH": _root()},
        )
        assert self._process.stdout is not None
        os.set_blocking(self._process.stdout.fileno(), False)

    def take(self) -> rsa.RSAPrivateKey | None:
        """A ready key, or None (none ready, or no pool)."""
        with self._lock:
            if self._process is None or self._process.stdout is None:
                return None
            # Read no more than one key: the keys not taken stay in the pipe, whose full buffer
            # stops the maker (the pool's bound; draining it here would let the maker run on).
            if not self._fill(_LENGTH.size):
                return None
            (size,) = _LENGTH.unpack_from(self._buffer)
            if not self._fill(_LENGTH.size + size):
                return None
            der = self._buffer[_LENGTH.size : _LENGTH.size + size]
            self._buffer = self._buffer[_LENGTH.size + size :]
            self.taken += 1
        key = serialization.load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def _fill(self, wanted: int) -> bool:
        """Read (without waiting) until the buffer holds `wanted` bytes; whether it does."""
        assert self._process is not None and self._process.stdout is not None
        with contextlib.suppress(BlockingIOError, OSError):
            while len(self._buffer) < wanted:
                chunk = os.read(self._process.stdout.fileno(), wanted - len(self._buffer))
                if not chunk:
                    break
                self._buffer += chunk
        return len(self._buffer) >= wanted

    def stop(self) -> None:
        with self._lock:
            process, self._process = self._process, None
            self._buffer = b""
        if process is not None:
            process.kill()
            process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()


def _root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def main() -> None:
    out = sys.stdout.buffer
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        while True:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            der = key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            out.write(_LENGTH.pack(len(der)) + der)
            out.flush()


if __name__ == "__main__":
    main()
