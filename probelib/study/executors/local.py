"""Backends on this machine: in this process (the serial reference) and a process pool."""
from __future__ import annotations

from ..units import RunOptions
from .worker import _Handle, _init_worker, run_batch


class InProcessBackend:
    """Runs each batch at once in this process (``workers=0``): for debugging and as the serial
    reference."""

    name = "serial"

    def __init__(self, options: RunOptions):
        self.options = options

    def submit(self, batches):
        out = []
        for b, needs in batches:
            h = _Handle(b, None, needs)
            h.result = run_batch(b, self.options, needs=needs)
            out.append(h)
        return out

    def poll(self, handles):
        return [(h, h.result, None) for h in handles]

    def running(self, handles) -> int:
        return 0

    def close(self):
        pass


class LocalBackend:
    """A process pool on this machine (``concurrent.futures.ProcessPoolExecutor``, spawned
    processes, ``threads`` torch/BLAS threads each). A worker that dies (killed, out of memory)
    breaks the pool: its batches are retried once in a new pool, then reported failed."""

    name = "local"

    def __init__(self, options: RunOptions, workers: int = 2):
        self.options, self.workers = options, workers
        self._pool = None

    def _get_pool(self):
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.options.threads, True))
        return self._pool

    def submit(self, batches):
        return [_Handle(b, self._get_pool().submit(run_batch, b, self.options, False, n), n) for b, n in batches]

    def poll(self, handles):
        from concurrent.futures.process import BrokenProcessPool
        out, broken = [], []
        for h in handles:
            if not h.ref.done():
                continue
            try:
                out.append((h, h.ref.result(), None))
            except BrokenProcessPool as exc:
                broken.append((h, exc))
            except Exception as exc:  # pragma: no cover - run_batch catches the units' errors
                out.append((h, None, f"{type(exc).__name__}: {exc}"))
        if broken:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            for h, exc in broken:
                if h.attempts < 2:
                    h.ref = self._get_pool().submit(run_batch, h.units, self.options, False, h.needs)
                    h.attempts += 1
                else:
                    out.append((h, None, "the worker process died twice (killed, out of memory, or started "
                                               "from a script that calls run_study outside "
                                               "`if __name__ == '__main__':`)"))
        return out

    def running(self, handles) -> int:
        return min(self.workers, sum(1 for h in handles if h.ref.running()))

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
