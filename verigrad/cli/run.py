"""``verigrad run``: grade every candidate of every case, print as cases finish, write the reports."""

from __future__ import annotations

import argparse
import time

__all__ = ["add_arguments", "command"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", default=["cases"], help="case files or directories (default: cases/)")
    p.add_argument("--dtype", action="append", choices=["float16", "bfloat16", "float32", "float64"],
                   help="restrict to these dtypes (default: each case's [check] dtypes)")
    p.add_argument("--json", metavar="FILE", help="write the JSON report (docs/report-schema.md)")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    p.add_argument("--no-fd", action="store_true",
                   help="skip the finite-difference schemes of [check] and the classic-check note")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="cases run in N worker processes (default 1); reports are identical for any N")
    p.add_argument("--executor", choices=["local", "dask"], default="local",
                   help="where the cases run: this machine (local, with --jobs) or a Dask cluster (dask: "
                        "--scheduler ADDRESS, or a LocalCluster of --jobs workers; docs/distributed.md)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="with --executor dask: the Dask scheduler to use (e.g. tcp://10.0.0.5:8786)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true", help="print only the cases with unmet expectations")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="also print every grade, diagnosis and wrong entry, the T/S/R split of every finite "
                        "difference and the classic-check notes")


def command(args, console, err) -> int:
    """Run the cases under ``args.paths``; exit code 0 (all expectations held), 1, or 130 (interrupted)."""
    from verigrad.casefile.loader import find_case_files
    from verigrad.cli.paths import check_output_paths
    from verigrad.errors import UsageError
    from verigrad.report import jsonio
    from verigrad.report.terminal import case_details, run_header, run_summary
    from verigrad.runner.case import CaseReport, RunReport, case_reports, unique_name
    from verigrad.spec import Dtype

    dtypes = tuple(Dtype(d) for d in dict.fromkeys(args.dtype)) if args.dtype else None
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: use 1 or more worker processes")
    if args.scheduler and args.executor != "dask":
        raise UsageError(f"--scheduler {args.scheduler}: a scheduler is used by --executor dask only",
                         hint=f"add --executor dask (verigrad run --executor dask --scheduler {args.scheduler})")
    check_output_paths(args, ("json", "junit", "html"))
    files = find_case_files(args.paths)
    # no more processes than cases: --jobs 99999 would fork 99999 idle pool processes (reports are identical)
    jobs = min(args.jobs, max(1, len(files)))
    reports: list[CaseReport] = []
    t0 = time.perf_counter()
    interrupted = False
    show_progress = console.is_terminal and not args.quiet
    progress = _progress(err) if show_progress else _NoProgress()
    names: dict[str, str] = {}
    header_printed = False
    try:
        if args.executor == "dask":
            from verigrad.runner.executors import dask_case_reports

            executor = dask_case_reports(files, dtypes, not args.no_fd, scheduler=args.scheduler,
                                         workers=jobs if args.jobs > 1 else None)
        else:
            executor = case_reports(files, dtypes, not args.no_fd, jobs)
        with progress, executor as next_report:
            task = progress.add_task("verigrad run", total=len(files))
            for f in files:
                def note(msg, _task=task):
                    progress.update(_task, description=msg[:50])
                    progress.refresh()
                rep = unique_name(next_report(f, note), f, names)
                reports.append(rep)
                progress.advance(task)
                progress.refresh()
                if not args.quiet or not rep.ok:
                    if not header_printed:
                        console.print(run_header())
                        header_printed = True
                    console.print(case_details(rep, verbose=args.verbose, quiet=args.quiet))
    except KeyboardInterrupt:
        interrupted = True
    run = RunReport(tuple(reports), time.perf_counter() - t0, interrupted=interrupted)
    console.print(run_summary(run, quiet=args.quiet))
    failed_writes = []
    for flag, render in (("json", _json), ("junit", _junit), ("html", _html)):
        target = getattr(args, flag)
        if not target:
            continue
        from verigrad import __version__  # importlib.metadata: only when a report is written

        try:  # a late failure (disk full, a directory removed) still lets the other formats be written
            jsonio.write_atomic(target, render(run, __version__))
        except OSError as exc:
            failed_writes.append(f"--{flag} {target}: {exc.strerror or exc}")
    for msg in failed_writes:
        err.print(f"verigrad: error: could not write {msg}", markup=False)
    if failed_writes:
        return 2
    if interrupted:
        return 130
    return 0 if run.ok else 1


def _progress(err):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=err, transient=True, auto_refresh=False)


class _NoProgress:
    """The progress bar when none is shown (not a terminal, or -q): rich.progress is not imported."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs):
        return 0

    def update(self, *args, **kwargs):
        pass

    advance = refresh = update


def _json(run, version: str) -> str:
    from verigrad.report import jsonio
    from verigrad.report.runjson import run_document

    return jsonio.dumps(run_document(run, version=version))


def _junit(run, version: str) -> str:
    from verigrad.report.junit import junit_xml

    return junit_xml(run)


def _html(run, version: str) -> str:
    from verigrad.report.html import run_html

    return run_html(run, version=version)
