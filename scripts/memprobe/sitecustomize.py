"""Memory probe of a ``pmpgw run`` process (a diagnostic, not part of the gateway).

    PYTHONPATH=scripts/memprobe PMP_MEMPROBE=/tmp/mem.jsonl .venv/bin/python -m bench --only e2e_ingest

Python imports this module at start-up in every process of the run; in a ``gateway.cli run``
process it starts a thread that writes one JSON line every PMP_MEMPROBE_S seconds (default
2): VmRSS, VmHWM, RssAnon, RssFile (MiB), threads, fds; glibc's heap (``mallinfo2``: in use,
free, mmap'd blocks: large numpy arrays such as the dedup table), SQLite's own memory
(``sqlite3_memory_used``: its page cache), the cyclic collector's counts, and the dedup
table (keys, MiB). With PMP_MEMPROBE_GARBAGE=1, every fifth line also collects generation
0 and counts what was cyclic garbage by type and by function (what the gateway's rare
collections, ``gateway.service.GC_THRESHOLDS``, let pile up). The probe's own thread and
file are one thread and one fd more than the gateway has.
"""

import os
import sys

if os.environ.get("PMP_MEMPROBE") and "run" in sys.argv and "--gw-id" in sys.argv:
    import collections
    import ctypes
    import gc
    import json
    import threading
    import time

    class _MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]

    _libc = ctypes.CDLL("libc.so.6")
    _libc.mallinfo2.restype = _MallInfo2
    _sqlite = ctypes.CDLL("libsqlite3.so.0")
    _sqlite.sqlite3_memory_used.restype = ctypes.c_int64
    _found: dict = {}
    _freeze = gc.freeze

    def _freeze_and_find() -> None:
        """``gateway.service.tune_gc`` freezes what exists once the state is loaded: find
        the writer's state (``Ingest``) first, frozen objects are not listed afterwards."""
        for obj in gc.get_objects():
            if type(obj).__name__ == "Ingest" and type(obj).__module__ == "gateway.ingest":
                _found["ingest"] = obj
        _freeze()

    gc.freeze = _freeze_and_find

    def _garbage() -> dict:
        gc.set_debug(gc.DEBUG_SAVEALL)
        collected = gc.collect(0)
        types = collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage)
        funcs = collections.Counter(f"{o.__code__.co_filename}:{o.__code__.co_firstlineno}:{o.__qualname__}"
                                    for o in gc.garbage if type(o).__name__ == "function")
        gc.garbage.clear()
        gc.set_debug(0)
        return {"garbage": collected, "garbage_types": types.most_common(8), "garbage_functions": funcs.most_common(3)}

    def _sample(n: int, started: float) -> dict:
        line = {"t": round(time.monotonic() - started, 1)}
        for entry in open("/proc/self/status").read().splitlines():
            key, _, value = entry.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                line[key] = int(value.split()[0]) // 1024
            elif key == "Threads":
                line[key] = int(value)
        line["fds"] = len(os.listdir("/proc/self/fd"))
        heap = _libc.mallinfo2()
        line.update(malloc_used_mib=heap.uordblks >> 20, malloc_free_mib=heap.fordblks >> 20,
                    mmap_mib=heap.hblkhd >> 20, sqlite_mib=_sqlite.sqlite3_memory_used() >> 20,
                    gc_count=gc.get_count(), gc_frozen=gc.get_freeze_count())
        if "ingest" in _found:
            dedup = _found["ingest"].pipeline.dedup
            line.update(dedup_keys=len(dedup), dedup_mib=dedup.capacity * 32 >> 20)
        if os.environ.get("PMP_MEMPROBE_GARBAGE") and n % 5 == 4:
            line.update(_garbage())
        return line

    def _probe() -> None:
        started = time.monotonic()
        with open(os.environ["PMP_MEMPROBE"], "a") as out:
            for n in range(sys.maxsize):
                time.sleep(float(os.environ.get("PMP_MEMPROBE_S", "2")))
                out.write(json.dumps(_sample(n, started)) + "\n")
                out.flush()

    threading.Thread(target=_probe, name="memprobe", daemon=True).start()
