"""hardway.image.pipeline
~~~~~~~~~~~~~~~~~~~~~~

The parts of a pull that can run at the same time, and the rule that keeps it safe.

Pulling a layer is four jobs: download the blob (and hash it: the digest), inflate it,
hash the tar (the diff_id), and create its files. Done one after the other they take the
sum of their times; here each runs in its own thread, with a bounded buffer between
them, so they take about as long as the slowest (``hashlib``, ISA-L, zlib and file
writes release the GIL on large buffers, so two cores are really used):

* a **download thread** per layer writes the blob to a :class:`Spool`, a temporary file
  that can be read while it is written; several layers download at once
  (``downloads`` at a time), so layer 2 arrives while layer 1 is unpacked;
* a :class:`ReadAhead` thread reads the spool as it grows, inflates it and hashes the tar;
* the caller's thread parses the tar and creates the files
  (:func:`hardway.image.apply.apply_layer`), layer after layer, in order — a later
  layer's whiteouts see what the earlier ones made.

The bytes are applied *before* their digest is known, so they may only go where a
failure can take them back: :func:`hardway.image.unpack.unpack_image` applies them to a
new ``.partial`` directory and renames it into place only when every layer's digest and
diff_id have been checked; a failure removes it. A layer applied on top of an existing
tree is first downloaded and checked whole (:meth:`Spool.wait`), as before.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import queue
import threading
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["Cancelled", "Downloads", "ReadAhead", "Spool"]

#: blocks of this size move between the threads: under glibc's mmap threshold (see
#: hardway.image.apply._CHUNK), so each reuses freed heap instead of fresh pages
CHUNK = 1 << 16
#: how long a waiting thread sleeps before it looks whether it was cancelled
_POLL = 0.2
#: a thread that waits for blocks is woken when this many are there (or at the end), and
#: one that waits for room when half the room is free: waking another thread costs a few
#: system calls and a hand-over of the GIL, so it is done once per batch, not per block
_BATCH = 4


class Cancelled(Exception):
    """A download or read-ahead thread was told to stop (an error, or Ctrl-C, elsewhere)."""


class Spool:
    """A blob downloaded by one thread while another reads it, in order.

    :meth:`fill` (in a download thread) copies a stream in; :meth:`reader` gives the
    bytes as they arrive. Blocks wait in memory, up to ``memory`` bytes: while a reader
    is there the download waits for it to make room, and while nobody reads yet (a later
    layer, downloading ahead) the rest goes to the temporary file ``path``. The end
    comes only when the stream has ended, so a
    :class:`~hardway.image.blobs.VerifyingReader` has checked the digest first, and a
    failure (a wrong digest, a broken connection) is raised to the reader after the
    bytes before it. :meth:`close` cancels the download and removes the file.

    >>> import tempfile; tmp = tempfile.TemporaryDirectory()
    >>> spool = Spool(os.path.join(tmp.name, "0.layer"), memory=4)
    >>> spool.fill(lambda: io.BytesIO(b"layer bytes")); spool.wait()
    >>> reader = spool.reader(); reader.read(), reader.read(), reader.read()
    (b'layer bytes', b'', b'')
    >>> spool.close(); tmp.cleanup()
    """

    def __init__(self, path: str, memory: int = 4 << 20) -> None:
        self.path, self._memory = path, memory
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        #: in order: blocks held in memory (bytes), or so many bytes of the file (int)
        self._segments: collections.deque[bytes | int] = collections.deque()
        self._held = self._file_end = self._file_at = 0
        self._reading, self._done = False, False
        self._starved = self._full = False  # the reader waits for bytes, the filler for room
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._cancelled = threading.Event()

    def fill(self, open_blob: Callable[[], BinaryIO]) -> None:
        """Copy the stream ``open_blob()`` in; never raises (the reader does)."""
        try:
            if self._cancelled.is_set():
                raise Cancelled()
            with open_blob() as blob:
                while data := blob.read(CHUNK):
                    self._put(data)
        except BaseException as exc:  # handed to the reader, who raises it
            return self._finish(exc)
        return self._finish(None)

    def _put(self, data: bytes) -> None:
        with self._changed:
            while True:
                if self._cancelled.is_set():
                    raise Cancelled()
                if self._held + len(data) <= self._memory:
                    self._segments.append(data)
                    self._held += len(data)
                    self._wake_reader()
                    return
                if not self._reading:
                    break  # nobody to wait for: to the file
                self._full = True
                if self._starved:  # never both waiting for each other
                    self._starved = False
                    self._changed.notify_all()
                self._changed.wait(_POLL)
        offset, done = self._file_end, 0  # only this thread writes the file
        while done < len(data):
            done += os.pwrite(self._fd, memoryview(data)[done:], offset + done)
        with self._changed:
            self._file_end += len(data)
            if self._segments and isinstance(self._segments[-1], int):
                self._segments[-1] += len(data)
            else:
                self._segments.append(len(data))
            self._wake_reader()

    def _ready(self) -> int:
        return self._held + self._file_end - self._file_at

    def _wake_reader(self) -> None:
        if self._starved and self._ready() >= min(_BATCH * CHUNK, self._memory // 2):
            self._starved = False
            self._changed.notify_all()

    def _finish(self, error: BaseException | None) -> None:
        with self._changed:
            if not self._done:
                self._done, self._error = True, error
            self._changed.notify_all()

    def wait(self) -> None:
        """Until the whole blob is here (so its digest was checked); its failure."""
        with self._changed:
            while not self._done:
                self._changed.wait(_POLL)
        if self._error is not None:
            raise self._error

    @property
    def failure(self) -> BaseException | None:
        """The download's error once it has ended (waits for the end)."""
        try:
            self.wait()
        except BaseException as exc:
            return exc
        return None

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes, the next in order, waiting until some are here; ``b""``
        at the end of a download that succeeded. One reader only."""
        with self._changed:
            self._reading = True
            if size <= 0:
                return b""
            while not self._segments or (self._starved and not self._done):
                if self._done and not self._segments:
                    if self._error is not None:
                        raise self._error
                    return b""
                self._starved = True  # until a batch is here (_wake_reader) or the end
                self._changed.wait(_POLL)
            self._starved = False
            if self._cancelled.is_set():
                raise Cancelled()
            head = self._segments[0]
            if isinstance(head, bytes):
                if len(head) > size:
                    self._segments[0], head = head[size:], head[:size]
                else:
                    self._segments.popleft()
                self._held -= len(head)
                if self._full and self._held <= self._memory // 2:
                    self._full = False
                    self._changed.notify_all()
                return head
            size, offset = min(size, head), self._file_at
            self._file_at += size
            if size == head:
                self._segments.popleft()
            else:
                self._segments[0] = head - size
        return os.pread(self._fd, size, offset)  # written before it was listed

    def reader(self) -> BinaryIO:
        """The blob as a stream (see :meth:`read`)."""
        return _SpoolReader(self)

    def cancel(self) -> None:
        """Stop the download at its next block; readers and waiters raise :class:`Cancelled`."""
        self._cancelled.set()
        with self._changed:
            if not self._done:
                self._done, self._error = True, Cancelled()
            self._changed.notify_all()

    def close(self, *, descriptor: bool = True) -> None:
        """Cancel, remove the file and (unless a thread may still write to it) close it."""
        self.cancel()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if descriptor and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Downloads:
    """One :class:`Spool` per blob in ``directory`` (``0.layer``, ``1.layer``, …), filled
    by ``jobs`` download threads in the order of ``openers``: the first layer, which is
    applied first, always starts first. Use it as a context manager: leaving it stops the
    downloads and removes the files.
    """

    def __init__(
        self, directory: str, openers: list[Callable[[], BinaryIO]], jobs: int = 3
    ) -> None:
        self.spools = [Spool(os.path.join(directory, f"{i}.layer")) for i in range(len(openers))]
        self._todo: queue.SimpleQueue[tuple[Spool, Callable[[], BinaryIO]]] = queue.SimpleQueue()
        for job in zip(self.spools, openers, strict=True):
            self._todo.put(job)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name="layer-download", daemon=True)
            for _ in range(min(jobs, len(openers)))
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                spool, opener = self._todo.get_nowait()
            except queue.Empty:
                return
            spool.fill(opener)

    def __enter__(self) -> list[Spool]:
        return self.spools

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel every download, wait a while for the threads, remove every file."""
        self._stop.set()
        for spool in self.spools:
            spool.cancel()
        for thread in self._threads:
            thread.join(timeout=10)
        idle = not any(thread.is_alive() for thread in self._threads)
        for spool in self.spools:  # a thread stuck in a read keeps its descriptor
            spool.close(descriptor=idle)


class _SpoolReader(io.RawIOBase):
    def __init__(self, spool: Spool) -> None:
        self._spool = spool

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        return self._spool.read(CHUNK if size is None or size < 0 else size)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)


class ReadAhead(io.RawIOBase):
    """``source`` read in a thread of its own, up to ``depth`` blocks ahead of the reader.

    The work a read of ``source`` does (inflating) then overlaps with what the reader
    does with the bytes; ``on_block`` sees each block as the reader takes it (hashing a
    whole block at once: in small pieces each update would hand the GIL to and fro).
    The source's error is raised to the reader, in order, after the bytes before it.
    :meth:`close` stops the thread.

    >>> with ReadAhead(io.BytesIO(b"tar bytes")) as ahead:
    ...     ahead.read(4), ahead.read(), ahead.read()
    (b'tar ', b'bytes', b'')
    """

    def __init__(
        self,
        source: BinaryIO,
        depth: int = 16,
        on_block: Callable[[bytes], object] | None = None,
    ) -> None:
        super().__init__()
        self._source, self._on_block = source, on_block
        self._blocks: collections.deque[bytes | BaseException] = collections.deque()
        self._depth, self._changed = depth, threading.Condition()
        self._starved = self._full = False  # the reader waits for blocks, the thread for room
        self._stop = threading.Event()
        self._block, self._at, self._eof = b"", 0, False
        self._thread = threading.Thread(target=self._work, name="layer-inflate", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._source.read(CHUNK)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        with self._changed:
            while len(self._blocks) >= self._depth and not self._stop.is_set():
                self._full = True
                if self._starved:  # never both waiting for each other
                    self._starved = False
                    self._changed.notify_all()
                self._changed.wait(_POLL)
            self._blocks.append(item)
            last = not isinstance(item, bytes) or not item
            if self._starved and (last or len(self._blocks) >= _BATCH):
                self._starved = False
                self._changed.notify_all()

    def _take(self) -> bytes | BaseException:
        with self._changed:
            while not self._blocks or self._starved:
                self._starved = True  # until a batch is here, or the end (_put)
                self._changed.wait(_POLL)
                if self._blocks and not self._thread.is_alive():
                    self._starved = False  # the thread has put its last block
            item = self._blocks.popleft()
            if self._full and len(self._blocks) <= self._depth // 2:
                self._full = False
                self._changed.notify_all()
            return item

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        """Up to ``size`` bytes (at most one block: a short read is not the end)."""
        if self._at == len(self._block):
            if self._eof:
                return b""
            item = self._take()
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            self._block, self._at = item, 0
            if not item:
                self._eof = True
                return b""
            if self._on_block is not None:  # in the reader's thread, a whole block at a time
                self._on_block(item)
        if size is None or size < 0 or (self._at == 0 and size >= len(self._block)):
            data = self._block[self._at :] if self._at else self._block
        else:
            data = self._block[self._at : self._at + size]
        self._at += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stop.set()  # a thread waiting for room sees it within _POLL
        self._thread.join(timeout=10)
        if not self._thread.is_alive():  # never close a decompressor in mid-call
            with contextlib.suppress(Exception):
                self._source.close()
        super().close()
