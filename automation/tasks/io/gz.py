"""Streaming gunzip for backups: ISA-L's inflate (about twice zlib's speed, same format), with
concatenated gzip members, bounded output per step, and a complete-stream check."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import cast

from isal import isal_zlib

# zlib level 1: on QR-shaped data ~8% larger than `gzip -6` but about twice as fast, so the
# dump, not the compressor, sets the pace (bench/backup_bench.py; docs/backups.md)
DEFAULT_GZIP_LEVEL = 1

INFLATE_LIMIT = 4 * 1024 * 1024  # max bytes inflated at once: bounds memory on repetitive dumps
GZIP_WBITS = zlib.MAX_WBITS | 16
_ERRORS = (zlib.error, cast("type[Exception]", isal_zlib.error))  # isal's stub: an instance


def gunzip_stream(chunks: Iterable[bytes], limit: int = INFLATE_LIMIT) -> Iterator[bytes]:
    """Inflate a (possibly multi-member) gzip stream; raise ValueError if it is corrupt or cut.

    At most `limit` bytes are inflated at a time, so a highly repetitive dump cannot balloon memory.
    """
    inflater = isal_zlib.decompressobj(GZIP_WBITS)
    in_member = False
    total_in = 0
    try:
        for chunk in chunks:
            total_in += len(chunk)
            data = chunk
            while data:
                in_member = True
                out = inflater.decompress(data, limit)
                while True:
                    if out:
                        yield out
                    if not inflater.unconsumed_tail or inflater.eof:
                        break
                    out = inflater.decompress(inflater.unconsumed_tail, limit)
                data = b""
                if inflater.eof:
                    data = inflater.unused_data
                    inflater = isal_zlib.decompressobj(GZIP_WBITS)
                    in_member = False
    except _ERRORS as exc:
        raise ValueError(f"not a valid gzip stream ({exc})") from None
    if total_in == 0:
        raise ValueError("the backup is empty (0 bytes)")
    if in_member:
        raise ValueError("gzip stream ends early (truncated object)")
