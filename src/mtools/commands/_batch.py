"""Running one job per input: keep going past bad files, report them, write
each output atomically, resume with --skip-existing, parallel with --jobs.

A job is a picklable callable `job(input) -> JobResult` (a module-level
function bound with functools.partial to a frozen options object), so
`--jobs N` can hand it to worker processes."""

import contextlib
import sys
from dataclasses import dataclass, field
from typing import Callable, Sequence

from mtools.errors import ModelNotFoundError, MtoolsError, OutputError, \
    RuntimeUnavailableError, UsageError, debugging
from mtools.io.streams import Input, OutputPlan, atomic_write, check_binary_stdout, is_terminal, \
    write_stdout


@dataclass
class JobResult:
    """What one input produced: encoded outputs (one per file under -o DIR/),
    and warnings to show unless --quiet."""

    outputs: list[bytes]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BatchSettings:
    plan: OutputPlan
    extension: str  # file extension of the outputs, e.g. "mid"
    binary: bool  # refuse a terminal on stdout
    single_per_file: bool  # the format holds one output per file (MIDI, WAV)
    jobs: int = 1
    skip_existing: bool = False
    quiet: bool = False
    progress: bool | None = None  # None: when stderr is a terminal
    format: str = ""  # the output format name ("midi", "jsonl", "wav")
    takes: int | None = None  # outputs per input (-n), when known before running


def score_batch(output: str | None, to: str | None, *, jobs: int, skip_existing: bool,
                quiet: bool, progress: bool | None, default: str = "midi",
                takes: int | None = None) -> BatchSettings:
    """Batch settings for a command that writes scores (MIDI/JSONL/WAV):
    where (-o), in which format (--to, the -o extension, else `default`);
    `takes`: outputs per input when the command knows it (-n)."""
    from mtools.io.formats import BINARY_FORMATS, FILE_EXTENSION, SINGLE_SCORE_FORMATS, \
        choose_output_format

    plan = OutputPlan.from_option(output)
    fmt = choose_output_format(to, plan, default)
    return BatchSettings(plan, FILE_EXTENSION[fmt], fmt in BINARY_FORMATS,
                         fmt in SINGLE_SCORE_FORMATS, jobs, skip_existing, quiet, progress, fmt,
                         takes if takes is None or fmt in SINGLE_SCORE_FORMATS else 1)


def score_inputs(args: Sequence[str] | None) -> list[Input]:
    """The inputs named on the command line, folders expanded to the score
    files (MIDI, JSONL, MusicXML, ABC) below them."""
    from mtools.io.sniff import SYMBOLIC_FORMATS, extensions_for
    from mtools.io.streams import expand_inputs

    return expand_inputs(args or [], extensions=extensions_for(SYMBOLIC_FORMATS))


def score_job(work: Callable, in_format: str | None,
              settings: BatchSettings) -> Callable[[Input], JobResult]:
    """The job `run_batch` runs for a command that works score by score:
    `work(score)` returns an object with `scores` and `warnings`
    (a module-level callable, or a partial of one, so --jobs can send the
    job to worker processes)."""
    from functools import partial

    return partial(_score_job, work, in_format, settings.format, _one_file_target(settings))


def _one_file_target(settings: BatchSettings) -> str | None:
    """Where the outputs go when that holds one file of a one-score
    format ("stdout", "-o PATH"); None when it can take several."""
    plan = settings.plan
    if not settings.single_per_file or plan.mode == "dir":
        return None
    return "stdout" if plan.mode == "stdout" else f"-o {plan.path}"


def _score_job(work: Callable, in_format: str | None, out_format: str, one_file: str | None,
               source: Input) -> JobResult:
    """Read one input, run `work` on every score in it, encode what they
    made. An input of several scores (an ABC book) bound for one MIDI/WAV
    file (`one_file`) is refused before the model runs."""
    from mtools.io.formats import FILE_EXTENSION, detect_format, encode_outputs, read_scores

    data = source.read_bytes()
    scores = read_scores(data, detect_format(data, in_format, source.name), source.name)
    if one_file is not None and len(scores) > 1:
        raise UsageError(f"{source.name} holds {len(scores)} scores, and {one_file} takes one "
                         f".{FILE_EXTENSION[out_format]} file", hint="use -o DIR/ or --to jsonl")
    outputs, warnings = [], []
    for score in scores:
        result = work(score)
        outputs.extend(result.scores)
        warnings.extend(result.warnings)
    return JobResult(encode_outputs(outputs, out_format), warnings)


def say(message: str) -> None:
    """One line on stderr, prefixed with the program name."""
    print(f"mtools: {message}", file=sys.stderr, flush=True)


def _check_plan(inputs: Sequence[Input], settings: BatchSettings) -> None:
    plan = settings.plan
    if plan.mode == "dir":
        _check_distinct_names(inputs, settings)
    several = (f"{len(inputs)} inputs" if len(inputs) > 1 else
               f"{settings.takes} outputs (-n)" if (settings.takes or 1) > 1 else None)
    where = _one_file_target(settings)
    if where is not None and several:
        raise UsageError(f"{several} cannot all go to {where} as one .{settings.extension} file",
                         hint="use -o DIR/ or --to jsonl")
    if plan.mode == "stdout":
        check_binary_stdout(settings.binary)
    elif plan.mode == "file" and settings.binary and is_terminal(plan.path):
        raise UsageError(f"binary output (MIDI/WAV) not written to the terminal {plan.path}",
                         hint="name a file, or use --to jsonl for text")
    if settings.skip_existing and plan.mode != "dir":
        raise UsageError("--skip-existing needs -o DIR/")
    guard, takes = InputGuard(inputs), (settings.takes or 1) if settings.single_per_file else 1
    for source in inputs:  # before any work; _emit checks each file again as it writes
        for index in range(takes):
            guard.check(plan.target(source, settings.extension, index if takes > 1 else None,
                                    takes))


class InputGuard:
    """Refuses an output path that is one of the inputs (`-o .` beside the
    primer, `-o ip/` for inputs in ip/, `-o a.mid` for a.mid): writing it
    would lose the input. Inputs that are regular files count; a path is
    the same when it resolves to it or is the same file (a case-insensitive
    file system, a hard link)."""

    def __init__(self, inputs: Sequence[Input]):
        import os

        self._by_name: dict[str, list[str]] = {}
        for source in inputs:
            if source.path is not None and os.path.isfile(source.path):
                real = os.path.realpath(source.path)
                self._by_name.setdefault(os.path.basename(real).lower(), []).append(real)

    def check(self, target) -> None:
        """UsageError when `target` (a path; None: stdout) is an input."""
        import os

        if target is None or not self._by_name:
            return
        real = os.path.realpath(target)
        candidates = self._by_name.get(os.path.basename(real).lower(), ())
        for path in candidates:
            if real == path or (os.path.exists(real) and os.path.samefile(real, path)):
                raise UsageError(f"{target} is an input: writing the output there would "
                                 "replace it", hint="write the outputs to another file or folder")


def _check_distinct_names(inputs: Sequence[Input], settings: BatchSettings) -> None:
    """Two inputs whose outputs would have one name (a/tune.abc and
    b/tune.abc into one folder, tune.abc beside tune.mid) are refused before
    any work: the second would silently replace the first."""
    seen: dict[object, Input] = {}
    for source in inputs:
        target = settings.plan.target(source, settings.extension)
        if target in seen:
            raise UsageError(f"{seen[target].name} and {source.name} would both be written to "
                             f"{target}", hint="give them different names, or one -o DIR/ each")
        seen[target] = source


def run_batch(inputs: Sequence[Input], job: Callable[[Input], JobResult],
              settings: BatchSettings) -> int:
    """Run `job` over `inputs` and write what it returns; returns the exit code
    (0 when every input succeeded, else the code of the first failure)."""
    _check_plan(inputs, settings)
    todo = [i for i in inputs if not (settings.skip_existing and _done(i, settings))]
    skipped = len(inputs) - len(todo)
    if skipped and not settings.quiet:
        say(f"skipped {skipped} input(s) whose output exists")
    failures: list[int] = []
    collected: list[bytes] = []  # for -o FILE: written once, at the end
    guard = InputGuard(inputs)
    with _progress(len(todo), settings) as advance, \
            contextlib.closing(_results(todo, job, settings.jobs)) as results:
        for done, (source, outcome) in enumerate(results):
            if isinstance(outcome, (ModelNotFoundError, RuntimeUnavailableError)):
                raise outcome  # a missing model or runtime: the same for every input, said once
            if isinstance(outcome, MtoolsError):
                if getattr(outcome, "traceback_text", None):
                    print(outcome.traceback_text, end="", file=sys.stderr)
                say(str(outcome) if str(outcome).startswith(source.name)
                    else f"{source.name}: {outcome}")
                failures.append(outcome.exit_code)
            else:
                try:
                    _emit(source, outcome, settings, collected, guard)
                except OutputError as error:  # a full disk, a read-only folder: stop
                    if len(todo) == 1:
                        raise
                    say(str(error))
                    say(f"stopped at input {done + 1} of {len(todo)}: the inputs after it "
                        "were not written")
                    failures.append(error.exit_code)
                    break
            advance()
    if settings.plan.mode == "file" and collected:
        atomic_write(settings.plan.path, b"".join(collected))
    if failures and len(inputs) > 1 and not settings.quiet:
        say(f"{len(failures)} of {len(inputs)} inputs failed")
    return failures[0] if failures else 0


def _done(source: Input, settings: BatchSettings) -> bool:
    """Whether --skip-existing may skip `source`: its one output is there,
    or a complete numbered set (NAME-1 … NAME-N, or NAME-01 … NAME-N when N
    has two digits, and so on) whose N is a whole number of takes (-n). An
    input's output count is known only after reading it (an ABC book gives
    one score per tune), so the set on disk says how many there were; _emit
    writes a set last to first, so a set cut short lacks NAME-1."""
    plan, extension, takes = settings.plan, settings.extension, settings.takes
    if (takes or 1) == 1 and plan.target(source, extension).exists():
        return True
    for digits in range(1, 5):
        smallest = max(10 ** (digits - 1), 2)  # target() numbers 2+ outputs, padded to the count
        count = 0
        while plan.target(source, extension, count, max(smallest, count + 1)).exists():
            count += 1
            if len(str(count + 1)) > digits:
                break
        if count and len(str(count)) == digits and (takes is None or count % takes == 0):
            return True
    return False


def _results(inputs: Sequence[Input], job, jobs: int):
    """(input, JobResult or MtoolsError) in input order. With jobs > 1, up
    to `jobs` worker processes (no more than there are inputs) run them;
    stdin is read here, in its turn (a worker's stdin is /dev/null). When
    the caller stops early (a closed pipe, Ctrl-C, an error), work not yet
    started is dropped and the workers are ended, not waited for."""
    if jobs <= 1 or len(inputs) <= 1:
        for source in inputs:
            yield source, _guarded(job, source)
        return
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=min(jobs, len(inputs)),
                               initializer=_ignore_interrupts)
    finished = False
    try:
        futures = [None if source.is_stdin else pool.submit(_guarded, job, source)
                   for source in inputs]
        for source, future in zip(inputs, futures):
            yield source, _guarded(job, source) if future is None else future.result()
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            workers = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in workers:
                process.terminate()


def _ignore_interrupts() -> None:
    """In a worker: Ctrl-C reaches the whole process group, and the parent
    ends the workers itself (a worker left to it prints a traceback)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _guarded(job, source: Input):
    try:
        return job(source)
    except MtoolsError as exc:
        if debugging():  # kept as text: it crosses from a worker process with the error
            import traceback
            exc.traceback_text = traceback.format_exc()
        return exc



def _emit(source: Input, result: JobResult, settings: BatchSettings,
          collected: list[bytes], guard: InputGuard) -> None:
    if not settings.quiet:
        for warning in result.warnings:
            say(f"{source.name}: warning: {warning}")
    plan = settings.plan
    where = _one_file_target(settings)
    if where is not None and len(result.outputs) > 1:
        raise UsageError(f"{source.name} gives {len(result.outputs)} outputs, and {where} "
                         f"takes one .{settings.extension} file", hint="use -o DIR/")
    if plan.mode == "stdout":
        for data in result.outputs:
            write_stdout(data)
    elif plan.mode == "file":
        collected.extend(result.outputs)
    else:  # the last first: NAME-1 is there only once all of them are (see _done)
        count = len(result.outputs)
        for index in reversed(range(count)):
            target = plan.target(source, settings.extension, index if count > 1 else None, count)
            guard.check(target)  # more outputs than -n said (an ABC book's tunes × -n)
            atomic_write(target, result.outputs[index])


class _progress:
    """A rich progress bar on stderr when it is a terminal (or --progress),
    for batches of more than one input; otherwise a no-op."""

    def __init__(self, total: int, settings: BatchSettings):
        from mtools.commands._options import shows_progress

        self.enabled = total > 1 and shows_progress(settings.progress, settings.quiet)
        self.total = total

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.console import Console
        from rich.progress import Progress
        self.bar = Progress(console=Console(stderr=True), transient=True)
        self.bar.start()
        task = self.bar.add_task("working", total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.stop()
        return False
