"""Where the cases of a run execute: on a Dask cluster (``verigrad run --executor dask``).

The unit of work is one case file (:func:`verigrad.runner.case.run_case`): independent of
every other, its argument a path and its result a picklable
:class:`~verigrad.runner.records.CaseReport`.  :func:`dask_case_reports` submits every file to
a Dask ``distributed`` scheduler (an existing one, ``--scheduler ADDRESS``, or a
``LocalCluster`` started for the run) and hands the reports back in file order, like the
process pool of :func:`verigrad.runner.case.case_reports`, so the reports - and the JSON,
apart from its ``timing`` - are the same as a local run's (docs/distributed.md).

What a Dask worker needs (docs/distributed.md): the same verigrad (and numpy, sympy, ...) as
the client, and the case files at the same paths - paths are sent as given, so a relative
path resolves against the worker's working directory.  Each case still runs its user code
in a candidate worker process forked by the Dask worker (the isolation, time limits and
messages of :mod:`verigrad.runner.candidates`); one thread per Dask worker is advised, since
forking a process while other threads run is fragile.

Dask is imported only here, and only when ``--executor dask`` is asked for.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable

from verigrad.errors import UsageError
from verigrad.runner.case import run_case, submission_order
from verigrad.runner.records import CaseReport

__all__ = ["dask_case_reports", "run_case_task"]

#: how long the client waits to reach a scheduler before saying it cannot
CONNECT_SECONDS = 20


def run_case_task(path: str, dtypes, with_fd: bool) -> CaseReport:
    """:func:`run_case` as a Dask task: the same report, whatever kind of process runs it.

    A Dask worker process is daemonic by default (``distributed.worker.daemon``), and a
    daemonic process may not start children through ``multiprocessing``; the case's
    candidate worker is one (it runs the user's code).  The flag is lifted for the task:
    the candidate worker is stopped by :func:`verigrad.runner.candidates.worker_scope`
    when the case ends, and dies with the Dask worker otherwise (``PR_SET_PDEATHSIG``).
    """
    import multiprocessing

    config = getattr(multiprocessing.current_process(), "_config", {})
    daemon = config.get("daemon")
    if daemon:
        config["daemon"] = False
    try:
        return run_case(path, dtypes=dtypes, with_fd=with_fd)
    finally:
        if daemon:
            config["daemon"] = daemon


def _client(scheduler: str | None, workers: int):
    """A ``distributed.Client`` on ``scheduler``, or on a LocalCluster of ``workers`` processes (and the cluster)."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise UsageError(f"--executor dask needs Dask distributed, which is not installed ({exc})",
                         hint='pip install "verigrad[dask]"') from None
    if scheduler is None:
        # one thread per worker process: each case forks a candidate worker (see the module docstring)
        with dask.config.set({"distributed.worker.daemon": False}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout=CONNECT_SECONDS), None
    except MemoryError:
        # a server that is not Dask (an HTTP proxy): its first 8 bytes ("HTTP/1.1") read as a frame length of exabytes
        raise UsageError(f"--scheduler {scheduler}: something answered there, but not a Dask scheduler (its reply "
                         "is not the Dask protocol: an HTTP server or proxy?)",
                         hint="give the address `dask scheduler` prints (e.g. tcp://10.0.0.5:8786), not its dashboard "
                              "or a proxy; docs/distributed.md") from None
    except (OSError, TimeoutError, ValueError) as exc:
        raise UsageError(f"--scheduler {scheduler}: could not reach a Dask scheduler there within "
                         f"{CONNECT_SECONDS} s ({type(exc).__name__}: {exc})",
                         hint="start one with `dask scheduler` (it prints its address, e.g. tcp://10.0.0.5:8786) "
                              "and workers with `dask worker ADDRESS --nthreads 1`; docs/distributed.md") from None


@contextlib.contextmanager
def dask_case_reports(files, dtypes, with_fd: bool, *, scheduler: str | None = None, workers: int | None = None):
    """Yield ``next_report(path, note) -> CaseReport``, the cases running on a Dask cluster.

    Parameters
    ----------
    files : list of Path
        The case files, in the order the reports are wanted (file order).
    dtypes : tuple of Dtype or None
    with_fd : bool
    scheduler : str or None
        A scheduler address (``tcp://host:8786``); None starts a LocalCluster for the run.
    workers : int or None
        Worker processes of the LocalCluster (default: the CPU count).

    Notes
    -----
    Every file is submitted at once, longest first
    (:func:`verigrad.runner.case.submission_order`); reports come
    back in file order.  A case whose task failed (its Dask worker died, the result could not
    be sent) comes back as a :class:`CaseReport` with the error, so the run goes on.  When the
    consumer stops (Ctrl-C, an error) the tasks are cancelled and a LocalCluster is closed.

    Raises
    ------
    UsageError
        Dask is not installed, or the scheduler cannot be reached.
    """
    client, cluster = _client(scheduler, workers or os.cpu_count() or 1)
    futures: dict = {}
    try:
        order = submission_order(files)
        for rank, f in enumerate(order):
            # a key of its own per run (pure=False): the same file in two runs is two tasks
            futures[f] = client.submit(run_case_task, str(f), dtypes, with_fd, pure=False,
                                       priority=len(order) - rank, key=f"verigrad-case-{rank}-{Path(f).stem}")

        def next_report(f, note: Callable[[str], None]) -> CaseReport:
            note(f"{Path(f).stem} (dask)")
            try:
                return futures[f].result()
            except Exception as exc:  # noqa: BLE001 - the task failed remotely: this case's error
                return CaseReport(str(f), Path(f).stem, error=f"{f}: the Dask task running this case failed: "
                                  f"{type(exc).__name__}: {exc}")

        yield next_report
    finally:
        with contextlib.suppress(Exception):
            client.cancel(list(futures.values()))
        with contextlib.suppress(Exception):
            client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
