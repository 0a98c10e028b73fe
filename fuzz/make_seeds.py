#!/usr/bin/env python3
"""Turns traces recorded with `memtrace run` into fuzz seeds.

Every absolute path in the blocks (the program, the modules) is replaced by
a made-up path of the same length, and every module's GNU build id by other
bytes, so the fuzz targets do not symbolize real ELF files or debug files
found by build id on every execution (libc's DWARF alone costs a second
per input under AddressSanitizer); the record encoding stays valid since
lengths do not change. zstd blocks are decompressed, patched
and compressed again (the `zstd` command), and every block gets its CRC32
again.

usage: make_seeds.py OUT_DIR TRACE...   (seed name: the trace's stem)
"""
import os
import re
import struct
import subprocess
import sys
import zlib

PATH = re.compile(rb"/(?:[A-Za-z0-9_.+-]+/)*[A-Za-z0-9_.+-]+\.(?:so(?:\.[0-9]+)*|trace)|/tmp/seeds/bin/[A-Za-z_]+|/[a-z]+/[A-Za-z0-9_./+-]+")


def fake(m):
    s = m.group(0)
    return b"/" + b"x" * (len(s) - 1)


def build_id(path):
    """The GNU build id of an ELF file (`readelf -n`), or None."""
    try:
        notes = subprocess.run(["readelf", "-n", path], capture_output=True,
                               text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    m = re.search(r"Build ID: ([0-9a-f]+)", notes)
    return bytes.fromhex(m.group(1)) if m else None


def patch(raw):
    for m in PATH.finditer(raw):
        bid = build_id(m.group(0).decode(errors="replace"))
        if bid:
            raw = raw.replace(bid, bytes(b ^ 0x5A for b in bid))
    return PATH.sub(fake, raw)


def convert(data):
    out = bytearray(data[:12])
    at = 12
    while at + 20 <= len(data):
        head = data[at:at + 20]
        assert head[:4] == b"MTBK", f"bad block at {at}"
        codec = head[4]
        stored_len, raw_len, _crc = struct.unpack("<III", head[8:20])
        stored = data[at + 20:at + 20 + stored_len]
        if len(stored) < stored_len:
            break  # a cut block stays cut
        if codec == 0:
            raw = patch(stored)
            new = raw
        else:
            raw = subprocess.run(["zstd", "-d", "-q", "-c"], input=stored,
                                 capture_output=True, check=True).stdout
            raw = patch(raw)
            new = subprocess.run(["zstd", "-1", "-q", "-c", "--no-check"], input=raw,
                                 capture_output=True, check=True).stdout
        out += head[:8] + struct.pack("<III", len(new), len(raw), zlib.crc32(new)) + new
        at += 20 + stored_len
    out += data[at:]
    return bytes(out)


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for trace in sys.argv[2:]:
        name = os.path.basename(trace).removesuffix(".trace").replace(".", "-")
        with open(trace, "rb") as f:
            data = f.read()
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(convert(data))


if __name__ == "__main__":
    main()
