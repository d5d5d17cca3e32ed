"""Slide tiles read in worker threads, kept in an LRU cache per pyramid level.

The GUI thread only asks (:meth:`TileLoader.request`) and looks up (:meth:`TileLoader.get`);
worker threads read through the Qt-free :class:`~pathomics_desktop.slides.viewer_tiles.PyramidTileReader`
(stored JPEG tiles decoded by libjpeg with the GIL released, or one OpenSlide handle per
thread), turn the pixels into a ``QImage`` (allowed off the GUI thread, unlike ``QPixmap``)
and hand it over: finished tiles are collected in a list and the GUI thread is woken by one
queued signal per batch (not one per tile), stores the whole batch and announces it with one
:attr:`TileLoader.tiles_ready`. The workers run at a lower CPU priority (``nice``
:data:`WORKER_NICE`, Linux) so that on a small machine the GUI thread is not preempted by
its own readers while it paints. Every request replaces the previous one: queued
tiles that are no longer wanted are dropped before anyone reads them (counted in
:attr:`TileLoader.dropped`). The coarsest level is never evicted, so the viewer always has
something to stretch while finer tiles load.

``synchronous=True`` is the naive viewer of ``pathomics bench viewer``: no threads, the
view reads missing tiles on the GUI thread while it paints (the baseline, never the app).
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections import OrderedDict, deque

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage


Key = tuple[int, int, int, int]  # (level, col, row, scale): decoded at 1/scale

#: nice value of the reader threads (Linux: per thread; 0 = the GUI's priority)
WORKER_NICE = 10


def lower_thread_priority(nice: int = WORKER_NICE) -> bool:
    """Give the calling thread a lower CPU priority (Linux ``setpriority`` on its thread id,
    which affects only that thread); False where that is not possible."""
    if not sys.platform.startswith("linux") or nice <= 0:
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), nice))
    except OSError:
        return False
    return True


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """A QImage owning a copy of an (h, w, 3) uint8 RGB array, in the 32-bit format the
    raster paint engine draws without converting (the conversion is done here, in the
    worker, once, rather than at every paint)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).convertToFormat(QImage.Format.Format_RGB32)


class TileLoader(QObject):
    """Worker threads + per-level LRU cache (a byte budget per level) of viewer tiles of one slide."""

    #: a batch of tiles arrived: the keys of those now in the cache (one signal per batch)
    tiles_ready = Signal(list)
    #: a tile could not be read: (key, message)
    tile_failed = Signal(object, str)
    _delivered = Signal()  # worker -> GUI: the arrived list has tiles (queued, once per batch)
    _serials = itertools.count(1)

    def __init__(self, reader, *, workers: int = 2, budget_mb_per_level: float = 96.0, synchronous: bool = False,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.reader = reader
        #: unique per loader (for caches of what was drawn from it; ids of dead objects recur)
        self.serial = next(TileLoader._serials)
        self.grid = reader.grid
        self.synchronous = synchronous
        #: bytes of decoded tiles kept per level (the tiles of the current view are never evicted)
        self.budget = int(budget_mb_per_level * 1024 * 1024)
        self._bytes = {lv: 0 for lv in range(self.grid.levels)}
        self._protected: set[tuple[int, int, int]] = set()
        self.top_level = self.grid.levels - 1
        self._cache: dict[int, OrderedDict[tuple[int, int], tuple[int, QImage]]] = {lv: OrderedDict() for lv in range(self.grid.levels)}
        self._cond = threading.Condition()
        self._queue: deque[Key] = deque()
        self._queued: set[Key] = set()
        self._inflight: set[Key] = set()
        self._closed = False
        self.gui_thread = threading.get_ident()
        #: (key, thread id) of every read, in order (list.append is atomic)
        self.read_log: list[tuple[Key, int]] = []
        self.dropped = 0
        self.failed: dict[Key, str] = {}
        #: (key, QImage | None, error) read by workers, not yet stored (guarded by _cond)
        self._arrived: list[tuple[Key, QImage | None, str]] = []
        self._wake_pending = False
        #: (start, end, tiles) of every batch stored on the GUI thread (perf_counter seconds)
        self.batch_log: deque[tuple[float, float, int]] = deque(maxlen=20000)
        self.nice = WORKER_NICE
        self._delivered.connect(self._on_delivered)
        self._threads: list[threading.Thread] = []
        if not synchronous:
            for i in range(max(1, int(workers))):
                t = threading.Thread(target=self._work, name=f"tile-loader-{i}", daemon=True)
                t.start()
                self._threads.append(t)

    # -- GUI thread ------------------------------------------------------------------
    def get(self, key: Key) -> QImage | None:
        """The cached tile (level, col, row) decoded at 1/scale or finer (marked as
        recently used), or None."""
        entry = self.entry(key)
        return None if entry is None else entry[1]

    def entry(self, key: Key) -> tuple[int, QImage] | None:
        """``(scale, image)`` of the cached tile if it is at least as fine as ``key`` asks."""
        level, col, row, scale = key
        cache = self._cache[level]
        entry = cache.get((col, row))
        if entry is None or entry[0] > scale:
            return None
        cache.move_to_end((col, row))
        return entry

    def any_entry(self, level: int, col: int, row: int) -> tuple[int, QImage] | None:
        """The cached tile at whatever scale (for stretching as a fallback)."""
        return self._cache[level].get((col, row))

    def has(self, key: Key) -> bool:
        entry = self._cache[key[0]].get((key[1], key[2]))
        return entry is not None and entry[0] <= key[3]

    def cached_count(self, level: int | None = None) -> int:
        if level is not None:
            return len(self._cache[level])
        return sum(len(c) for c in self._cache.values())

    def request(self, keys: list[Key]) -> None:
        """Want exactly ``keys`` (in priority order): start the missing ones, drop queued
        tiles that are no longer wanted."""
        if self.synchronous:
            return
        self._protected = {k[:3] for k in keys}
        want = [k for k in dict.fromkeys(keys) if not self.has(k) and k not in self.failed]
        with self._cond:
            fresh = [k for k in want if k not in self._inflight]
            stale = self._queued.difference(fresh)
            self.dropped += len(stale)
            self._queue = deque(fresh)
            self._queued = set(fresh)
            self._cond.notify_all()

    @property
    def wanted(self) -> set[tuple[int, int, int]]:
        """(level, col, row) of the tiles of the last request (the current view's)."""
        return self._protected

    def pending(self) -> int:
        """Tiles queued or being read."""
        with self._cond:
            return len(self._queued) + len(self._inflight)

    def read_now(self, key: Key) -> QImage | None:
        """Read a tile on the calling thread (the naive baseline only) and cache it."""
        try:
            img = rgb_to_qimage(self.reader.read_tile(*key))
        except Exception as exc:  # noqa: BLE001 - reported per tile
            self.failed[key] = str(exc)
            return None
        self.read_log.append((key, threading.get_ident()))
        self._store(key, img)
        return self.get(key)

    @Slot()
    def _on_delivered(self) -> None:
        """Store every tile the workers have finished since the last batch; one
        :attr:`tiles_ready` for all of them (also when all of them failed, so that a view
        waiting for its last tile learns that none is pending)."""
        t0 = time.perf_counter()
        with self._cond:
            batch, self._arrived = self._arrived, []
            self._wake_pending = False
            for key, _img, _error in batch:
                self._inflight.discard(key)
        stored = []
        for key, img, error in batch:
            if img is None:
                self.failed[key] = error
                self.tile_failed.emit(key, error)
            else:
                self._store(key, img)
                stored.append(key)
        self.batch_log.append((t0, time.perf_counter(), len(batch)))
        if batch:
            self.tiles_ready.emit(stored)

    def _store(self, key: Key, img: QImage) -> None:
        """Cache a tile (the finer decode wins); evict the least recently used tiles of the
        level beyond its byte budget, except the coarsest level and the wanted tiles."""
        level, col, row, scale = key
        cache = self._cache[level]
        old = cache.get((col, row))
        if old is None or old[0] >= scale:
            if old is not None:
                self._bytes[level] -= old[1].sizeInBytes()
            cache[(col, row)] = (scale, img)
            self._bytes[level] += img.sizeInBytes()
        cache.move_to_end((col, row))
        if level == self.top_level or self._bytes[level] <= self.budget:
            return
        for cr in list(cache):
            if self._bytes[level] <= self.budget:
                break
            if (level, *cr) in self._protected:
                continue
            self._bytes[level] -= cache.pop(cr)[1].sizeInBytes()

    def close(self) -> None:
        """Stop the workers (after their current tile), close the reader and let go of the
        cached tiles (their memory is freed now, whenever this object itself goes)."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._queued.clear()
            self._arrived.clear()
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=5.0)
        self._threads = []
        self.reader.close()
        for cache in self._cache.values():
            cache.clear()
        self._bytes = {lv: 0 for lv in self._bytes}

    # -- worker threads ---------------------------------------------------------------
    def _work(self) -> None:
        lower_thread_priority(self.nice)
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                key = self._queue.popleft()
                self._queued.discard(key)
                self._inflight.add(key)
            img, error = None, ""
            try:
                img = rgb_to_qimage(self.reader.read_tile(*key))
                self.read_log.append((key, threading.get_ident()))
            except Exception as exc:  # noqa: BLE001 - a bad tile is reported, the others go on
                error = str(exc)
            with self._cond:
                if self._closed:
                    return
                self._arrived.append((key, img, error))
                wake, self._wake_pending = not self._wake_pending, True
            if wake:
                self._delivered.emit()
