"""Bounded line reading: no peer (a probed server, a process's output, a log stream) can make the agent hold
an unbounded line or kill a reader with one.

``asyncio.StreamReader.readline`` raises ``ValueError`` past its 64 KiB limit, which ended the reader task
for good; these helpers read in chunks and cut a line at ``limit`` bytes instead (the rest of that line is
dropped, the cut line is marked with ``TRUNCATED``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator

MAX_LINE = 64 * 1024  # bytes of one line kept; the rest of a longer line is dropped
TRUNCATED = " [line truncated]"
CHUNK = 16 * 1024


async def read_line(reader: asyncio.StreamReader, limit: int = MAX_LINE) -> tuple[bytes, bool]:
    """(the first line, at most ``limit`` bytes without its newline; whether it was cut). Reads at most
    ``limit`` + one chunk bytes past what it returns; b"" at end of stream."""
    buf = bytearray()
    while len(buf) <= limit:
        chunk = await reader.read(CHUNK)
        if not chunk:
            return bytes(buf), False
        cut = chunk.find(b"\n")
        if cut >= 0:
            buf += chunk[:cut]
            return (bytes(buf[:limit]), True) if len(buf) > limit else (bytes(buf), False)
        buf += chunk
    return bytes(buf[:limit]), True


class LineSplitter:
    """Turns chunks into lines, holding at most ``limit`` bytes of a partial line."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._skipping = False  # inside the dropped rest of an over-long line

    def feed(self, chunk: bytes) -> list[tuple[bytes, bool]]:
        """The complete lines in ``chunk`` (with what came before): (line, truncated) pairs."""
        out: list[tuple[bytes, bool]] = []
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            piece = chunk[start:] if nl < 0 else chunk[start:nl]
            if not self._skipping:
                room = self.limit - len(self._buf)
                self._buf += piece[: max(room, 0)]
                if len(piece) > room:
                    out.append((bytes(self._buf), True))
                    self._buf.clear()
                    self._skipping = True
            if nl < 0:
                return out
            if self._skipping:
                self._skipping = False
            else:
                out.append((bytes(self._buf), False))
                self._buf.clear()
            start = nl + 1

    def flush(self) -> tuple[bytes, bool] | None:
        """The last unterminated line, if any (at the end of the stream)."""
        if self._skipping or not self._buf:
            self._buf.clear()
            return None
        line = bytes(self._buf)
        self._buf.clear()
        return line, False


def as_text(line: bytes, truncated: bool) -> str:
    text = line.decode(errors="replace").rstrip("\r")
    return text + TRUNCATED if truncated else text


async def text_lines(chunks: AsyncIterable[bytes], limit: int = MAX_LINE) -> AsyncIterator[str]:
    """Decoded lines of a byte stream, each cut at ``limit`` bytes."""
    split = LineSplitter(limit)
    async for chunk in chunks:
        for line, cut in split.feed(chunk):
            yield as_text(line, cut)
    last = split.flush()
    if last is not None:
        yield as_text(*last)


async def reader_chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while chunk := await reader.read(CHUNK):
        yield chunk
