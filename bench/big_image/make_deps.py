"""Write ~400 MB of made-up installed dependencies, the way `RUN pip install -r requirements.txt`
fills a layer: packages of many small Python modules, a few large compiled libraries, dist-info
metadata (small JSON files among them, which the key guard reads whole). Runs inside the image at
build time (python3 of the base image, standard library only); no download. Usage: make_deps.py
TARGET [MB]."""

import json
import os
import random
import sys

_WORDS = (
    """self return import def class for in if else elif while try except with as from """
    """None True False
value result data index item key args kwargs config client request response error name """
    """path buffer stream
handle parse render encode decode array matrix shape dtype axis lambda yield"""
)
WORDS = _WORDS.split()


def text_pool(rng: random.Random, size: int) -> bytes:
    """Code-like text (compresses about 4x with gzip, like real site-packages)."""
    lines, total = [], 0
    while total < size:
        line = "    " * rng.randrange(4) + " ".join(
            rng.choice(WORDS) for _ in range(rng.randrange(3, 12))
        )
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines).encode()


def binary_pool(rng: random.Random, size: int) -> bytes:
    """Object-code-like bytes: random runs between zero runs (compresses about 2x)."""
    out = bytearray()
    while len(out) < size:
        out += rng.randbytes(rng.randrange(64, 512)) + bytes(rng.randrange(32, 512))
    return bytes(out[:size])


def main() -> None:
    target, megabytes = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 400
    rng = random.Random(18)
    text, binary = text_pool(rng, 4 << 20), binary_pool(rng, 8 << 20)
    budget = megabytes << 20
    written = package = 0
    while written < budget:
        name = f"pkg{package:03d}"
        root = os.path.join(target, name)
        for module in range(150):  # ~150 modules of 1-30 KB per package
            directory = os.path.join(root, f"sub{module % 8}")
            os.makedirs(directory, exist_ok=True)
            size = rng.randrange(1 << 10, 30 << 10)
            start = rng.randrange(len(text) - size)
            with open(os.path.join(directory, f"mod{module}.py"), "wb") as handle:
                handle.write(f"# {name} module {module}\n".encode() + text[start : start + size])
            written += size
        for library in range(2):  # two compiled libraries of 0.5-3 MB
            size = rng.randrange(1 << 19, 3 << 20)
            start = rng.randrange(len(binary) - size)
            with open(os.path.join(root, f"_native{library}.so"), "wb") as handle:
                handle.write(b"\x7fELF" + binary[start : start + size])
            written += size
        info = os.path.join(target, f"{name}-1.0.dist-info")
        os.makedirs(info, exist_ok=True)
        with open(os.path.join(info, "direct_url.json"), "w") as handle:
            json.dump(
                {"url": f"file:///wheels/{name}-1.0-py3-none-any.whl", "archive_info": {}}, handle
            )
        with open(os.path.join(info, "METADATA"), "w") as handle:
            handle.write(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        package += 1
    print(f"wrote {written >> 20} MB in {package} packages under {target}")


if __name__ == "__main__":
    main()
