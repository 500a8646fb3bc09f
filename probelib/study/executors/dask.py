"""The Dask backend: a ``distributed`` cluster through its ``concurrent.futures`` interface."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..spec import StudyError
from ..units import RunOptions
from .worker import THREAD_VARIABLES, _Handle, run_batch


class DaskBackend:
    """A ``distributed`` cluster through its ``concurrent.futures`` interface
    (``Client.get_executor``): a running scheduler (``scheduler="tcp://host:8786"``), a
    ``LocalCluster`` of ``workers`` single-threaded processes (``cluster="local"``, the default)
    or a dask-jobqueue ``SLURMCluster`` of ``workers`` jobs (``cluster="slurm"``; ``cores``,
    ``memory``, ``walltime``, ``queue``, ``account``, ``job_extra``), or a ``client`` you made."""

    name = "dask"

    def __init__(self, options: RunOptions, scheduler: str | None = None, cluster: str = "local",
                 workers: int = 2, client=None, cores: int | None = None, memory: str = "8GB",
                 walltime: str = "01:00:00", queue: str | None = None, account: str | None = None,
                 job_extra: Sequence[str] = ()):
        from distributed import Client

        self.options, self.workers = options, workers
        self._own_client, self._cluster = client is None, None
        env = {v: str(options.threads) for v in THREAD_VARIABLES}
        env["PROBELIB_CACHE"] = options.cache_dir
        if client is not None:
            self.client = client
        elif scheduler:
            self.client = Client(scheduler)
        elif cluster == "local":
            from distributed import LocalCluster
            self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None, env=env)
            self.client = Client(self._cluster)
        elif cluster == "slurm":
            from dask_jobqueue import SLURMCluster
            self._cluster = SLURMCluster(
                cores=cores or options.threads, processes=1, memory=memory, walltime=walltime,
                queue=queue, account=account, job_extra_directives=list(job_extra),
                log_directory=str(Path(options.log_dir) / "dask-jobqueue"),
                job_script_prologue=[f"export {k}={v}" for k, v in env.items()])
            self._cluster.scale(jobs=workers)
            self.client = Client(self._cluster)
        else:
            raise StudyError(f"unknown dask cluster {cluster!r}; valid: 'local', 'slurm' (or a scheduler address)")
        self.executor = self.client.get_executor(pure=False)

    def submit(self, batches):
        return [_Handle(b, self.executor.submit(run_batch, b, self.options, False, n), n) for b, n in batches]

    def poll(self, handles):
        out = []
        for h in handles:
            if not h.ref.done():
                continue
            try:
                out.append((h, h.ref.result(), None))
            except Exception as exc:  # a worker lost several times, a task that could not run
                out.append((h, None, f"{type(exc).__name__}: {exc} (dask worker logs: client.get_worker_logs())"))
        return out

    def running(self, handles) -> int:
        try:
            threads = sum(self.client.nthreads().values())
        except Exception:  # pragma: no cover
            threads = 0
        return min(threads, sum(1 for h in handles if not h.ref.done()))

    def close(self):
        import logging
        # workers that stop (or Slurm jobs that end) make the scheduler log closed connections
        logging.getLogger("distributed").setLevel(logging.ERROR)
        try:
            self.executor.shutdown(wait=False)
        except Exception:  # pragma: no cover
            pass
        if self._own_client:
            self.client.close()
            if self._cluster is not None:
                self._cluster.close()
