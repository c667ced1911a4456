"""Parse documents in a separate, long-lived worker process with a time limit and a memory cap.

    parser = build_parser(settings)            # IsolatedParser, or parsers.parse when isolation is off
    document = parser("report.pdf", data)      # same contract as ragline.parsers.parse

Why a process: a hostile file (a PDF whose pages take minutes each, a CSV whose rows expand to
gigabytes of text) must fail on its own, as that file's ParseError, while the run goes on. A
thread cannot be stopped and shares the memory of the run; a process can be killed and capped.

How:
- One worker per IsolatedParser, started on the first parse as a fresh interpreter (never a fork:
  the parent may hold torch threads, which a fork would copy in an unusable state) and kept for
  the next files, so a file costs a round trip on a socket, not a new process. Messages are framed
  by multiprocessing.connection; a 200 MB file is one send_bytes.
- The worker imports the parser libraries, then caps its address space (RLIMIT_AS) and its data
  segment (RLIMIT_DATA) at what it uses by then plus `memory_mb`. An allocation past the cap
  raises MemoryError inside the worker, which reports it and carries on.
- The parent waits for the answer with a deadline; on expiry it kills the worker (SIGKILL) and
  the next file gets a fresh one. A worker that dies (killed, segfault) becomes the file's
  ParseError with a reason; a worker found dead between files is replaced without blaming anyone.
- No orphans: an idle worker exits when its socket closes (the parent closed it or died); a busy one
  is killed by the kernel when its parent dies (PR_SET_PDEATHSIG, when started from the main
  thread), and a watchdog thread in the worker exits when its parent pid changes. close(), the
  context manager and an atexit hook stop the worker in an orderly way.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import logging
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from ragline import parsers
from ragline.errors import ParseError, RaglineError
from ragline.types import ParsedDocument

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 120.0
DEFAULT_MEMORY_MB = 2048
MIB = 1024 * 1024
# Starting a worker imports pandas, lxml, pypdf, ...: seconds on a busy machine, never the file's fault.
WORKER_START_TIMEOUT_SECONDS = 120.0
WORKER_STOP_GRACE_SECONDS = 2.0
PARENT_CHECK_INTERVAL_SECONDS = 0.5

# The libraries ragline.parsers imports lazily, imported by the worker before its memory is capped,
# so the cap measures what parsing a file allocates, not what loading a library costs.
PARSER_LIBRARIES = ("pypdf", "bs4", "lxml.etree", "docx", "pptx", "pandas", "openpyxl")

# Messages on the socket. Parent -> worker: the filename, then the bytes. Worker -> parent:
# (READY,) once, then per file one of (OK, ParsedDocument), (PARSE_ERROR, name, reason),
# (OUT_OF_MEMORY,), (OUT_OF_MEMORY_LEAVING,) when it cannot go on and exits, (FAILED, description).
READY, OK, PARSE_ERROR, OUT_OF_MEMORY, FAILED = "ready", "ok", "parse_error", "out_of_memory", "failed"
OUT_OF_MEMORY_LEAVING = "out_of_memory_leaving"

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class ParserWorkerError(RaglineError):
    """The parse worker process cannot be started: an environment problem that would fail every
    document, so it stops the run instead of quarantining files one by one."""


class ParseSettings(Protocol):
    """What build_parser reads from ragline.config.Settings."""

    parse_isolation: bool
    parse_timeout_seconds: float
    parse_memory_mb: int


def build_parser(settings: ParseSettings) -> Callable[[str, bytes], ParsedDocument]:
    """The parse function a run should use: isolated in a worker process unless switched off."""
    if not settings.parse_isolation:
        return parsers.parse
    return IsolatedParser(timeout_seconds=settings.parse_timeout_seconds, memory_mb=settings.parse_memory_mb)


@contextmanager
def parser_for(settings: ParseSettings) -> Iterator[Callable[[str, bytes], ParsedDocument]]:
    """build_parser's parse function for the length of a run; its worker (if any) stops after."""
    parse = build_parser(settings)
    try:
        yield parse
    finally:
        if isinstance(parse, IsolatedParser):
            parse.close()


# --------------------------------------------------------------------------- reasons (for the person fixing the file)


def timeout_reason(seconds: float) -> str:
    return (
        f"parsing stopped after {seconds:g} s (limit RAGLINE_PARSE_TIMEOUT_SECONDS); "
        "the file may be crafted to hang the parser, or be too large to parse in that time"
    )


def memory_reason(memory_mb: int | None) -> str:
    limit = f"{memory_mb} MiB" if memory_mb else "the memory available"
    return (
        f"parsing needed more than {limit} (limit RAGLINE_PARSE_MEMORY_MB); the file may be a "
        "decompression bomb or crafted to exhaust memory (raise the limit if it is a genuine large document)"
    )


def too_large_reason(size: int, memory_mb: int) -> str:
    return (
        f"file is {math.ceil(size / MIB)} MiB, more than parsing may use ({memory_mb} MiB, "
        "limit RAGLINE_PARSE_MEMORY_MB); raise the limit to parse it"
    )


def died_reason(exitcode: int | None, memory_mb: int | None) -> str:
    """Why a worker that stopped answering in the middle of a file is gone, from its exit status."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        if -exitcode == signal.SIGKILL:
            limit = f"{memory_mb} MiB" if memory_mb else "no limit"
            return (
                "the parser process was killed (SIGKILL) while parsing this file: the system may have run out "
                f"of memory (parse limit {limit}, RAGLINE_PARSE_MEMORY_MB) or someone stopped it; "
                "if this file fails again, it may be crafted to exhaust memory"
            )
        return f"a parser library crashed on this file ({name}); the file may be damaged or crafted to crash parsers"
    if exitcode is None:
        return "the parser process stopped answering while parsing this file"
    return f"the parser process exited unexpectedly (exit code {exitcode}) while parsing this file"


# --------------------------------------------------------------------------- the parent side


class _Worker:
    """One worker process and the parent's end of its socket."""

    def __init__(self, process: subprocess.Popen[bytes], conn: Connection):
        self.process, self.conn = process, conn
        self.pid: int = process.pid

    @classmethod
    def start(cls, memory_mb: int | None) -> _Worker:
        if not sys.executable:
            raise ParserWorkerError("cannot start the parse worker: this Python does not know its own executable")
        parent_socket, child_socket = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _WORKER_BOOTSTRAP, str(child_socket.fileno())],
                pass_fds=[child_socket.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # stdout may be the CLI's --json output: keep library prints off it
                close_fds=True,
            )
        except OSError as exc:
            parent_socket.close()
            raise ParserWorkerError(f"cannot start the parse worker process: {exc}") from exc
        finally:
            child_socket.close()  # only the worker holds that end now: its exit is our EOF
        worker = cls(process, Connection(parent_socket.detach()))
        try:
            worker.conn.send(
                {
                    "sys_path": list(sys.path),  # so the worker imports this very ragline
                    "memory_mb": memory_mb,
                    "parent_pid": os.getpid(),
                    # The kernel's parent-death signal follows the *thread* that started the child:
                    # only safe when that thread lives as long as the process, i.e. the main thread.
                    "death_signal": threading.current_thread() is threading.main_thread(),
                }
            )
            if not wait([worker.conn], timeout=WORKER_START_TIMEOUT_SECONDS):
                raise ParserWorkerError(
                    f"the parse worker process did not start within {WORKER_START_TIMEOUT_SECONDS:g} s"
                )
            message = worker.conn.recv()
        except (EOFError, OSError) as exc:
            exitcode = worker.exitcode()
            worker.kill()
            raise ParserWorkerError(
                f"the parse worker process exited while starting (exit code {exitcode}); see its error output"
            ) from exc
        except BaseException:
            worker.kill()
            raise
        if message != (READY,):
            worker.kill()
            raise ParserWorkerError(f"the parse worker process sent {message!r} instead of its ready message")
        log.debug("parse worker %s started", worker.pid)
        return worker

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """Stop at once and reap it: no zombie left behind."""
        if self.process.poll() is None:
            self.process.kill()
        self._reap()
        self.conn.close()

    def stop(self) -> None:
        """Closing the socket tells an idle worker to exit; one that does not in time is killed."""
        self.conn.close()
        try:
            self.process.wait(WORKER_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()

    def forget(self) -> None:
        """In a forked child: drop the inherited socket end (so the worker still sees EOF when its
        real parent goes) without touching a process that is not ours."""
        self.conn.close()

    def exitcode(self) -> int | None:
        """Its exit status (negative: the signal that ended it), waiting briefly for one on its way out."""
        try:
            return self.process.wait(WORKER_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            return None

    def _reap(self) -> None:
        try:
            self.process.wait(WORKER_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:  # stuck in the kernel (e.g. uninterruptible I/O): nothing more to do
            log.warning("parse worker %s did not exit after SIGKILL", self.pid)


# The worker's entry point. `-c` rather than multiprocessing's spawn: spawn re-runs the caller's
# main script in the child, which breaks (or worse, repeats the work of) any script that lacks an
# `if __name__ == "__main__"` guard. The socket's first message carries the settings.
_WORKER_BOOTSTRAP = """
import os
import sys
from multiprocessing.connection import Connection
conn = Connection(int(sys.argv[1]))
settings = conn.recv()
sys.path[:] = settings.pop("sys_path")
from ragline.isolation import worker_main
worker_main(conn, **settings)
sys.stderr.flush()
os._exit(0)  # skip tearing down pandas & co. module by module: close() and exit need not wait for it
"""


_live_parsers: weakref.WeakSet[IsolatedParser] = weakref.WeakSet()


class IsolatedParser:
    """`parsers.parse` run in a worker process, with a per-file timeout and a memory cap.

    Same contract as `parsers.parse`: returns the ParsedDocument or raises ParseError(filename,
    reason); a file that hangs, exhausts memory or crashes the worker is reported that way. One
    parse at a time per instance (callers in several threads take turns). Raises ParserWorkerError
    only when no worker can be started at all.
    """

    def __init__(
        self,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        memory_mb: int | None = DEFAULT_MEMORY_MB,
    ):
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, not {timeout_seconds!r}")
        if memory_mb is not None and memory_mb <= 0:
            raise ValueError(f"memory_mb must be positive (or None for no cap), not {memory_mb!r}")
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        _live_parsers.add(self)

    @property
    def worker_pid(self) -> int | None:
        """The worker's process id, or None before the first parse and after close()."""
        worker = self._worker
        return worker.pid if worker is not None else None

    def __call__(self, filename: str, data: bytes) -> ParsedDocument:
        return self.parse(filename, data)

    def parse(self, filename: str, data: bytes) -> ParsedDocument:
        if self.memory_mb is not None and len(data) > self.memory_mb * MIB:
            raise ParseError(filename, too_large_reason(len(data), self.memory_mb))
        with self._lock:
            return self._parse_locked(filename, data)

    def close(self) -> None:
        """Stop the worker; a later parse starts a new one."""
        with self._lock:
            worker, self._worker = self._worker, None
            if worker is not None:
                worker.stop()

    def __getstate__(self) -> dict[str, Any]:
        # Pickled into another process (a dask or Prefect task), a parser carries its limits only:
        # the copy starts its own worker there, never writes to this one's socket.
        return {"timeout_seconds": self.timeout_seconds, "memory_mb": self.memory_mb}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __enter__(self) -> IsolatedParser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------------- internals

    def _parse_locked(self, filename: str, data: bytes) -> ParsedDocument:
        try:
            return self._exchange(filename, data)
        except ParseError:
            raise  # the worker was already dealt with (kept, or killed and replaced)
        except BaseException:
            # Interrupted mid-conversation (Ctrl-C, a cancelled task): the worker's next reply
            # would be this file's, so it must not serve another file.
            if self._worker is not None:
                self._discard(self._worker)
            raise

    def _exchange(self, filename: str, data: bytes) -> ParsedDocument:
        worker = self._send_with_retry(filename, data)
        if not wait([worker.conn], timeout=self.timeout_seconds):  # a dead worker's EOF wakes this too
            log.warning("parse of %r passed %g s: killing parse worker %s", filename, self.timeout_seconds, worker.pid)
            self._discard(worker)
            raise ParseError(filename, timeout_reason(self.timeout_seconds))
        reply = self._receive(worker)
        if reply is None:
            exitcode = worker.exitcode()
            self._discard(worker)
            raise ParseError(filename, died_reason(exitcode, self.memory_mb))
        if reply[0] == OUT_OF_MEMORY_LEAVING:
            # It is exiting: were it kept, the next file could be sent to it before it is gone.
            self._discard(worker)
        return self._answer(filename, reply)

    def _send_with_retry(self, filename: str, data: bytes) -> _Worker:
        """Hand the file to a live worker. A worker that died between files (killed from outside)
        is replaced and the file sent again: that death is not this file's doing."""
        for attempt in (1, 2):
            worker = self._live_worker()
            try:
                worker.conn.send(filename)
                worker.conn.send_bytes(data)
                return worker
            except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
                # It may have refused the bytes for lack of memory and said so before exiting.
                reply = self._receive(worker)
                self._discard(worker)
                if reply is not None and reply[0] != OK:
                    raise self._failure(filename, reply) from None
                if attempt == 2:
                    raise ParseError(filename, died_reason(worker.exitcode(), self.memory_mb)) from None
                log.info("parse worker %s was gone before %r reached it; starting another", worker.pid, filename)
        raise AssertionError("unreachable")

    def _live_worker(self) -> _Worker:
        worker = self._worker
        if worker is not None and not worker.alive():
            log.info("parse worker %s exited between files (exit code %s); starting another",
                     worker.pid, worker.exitcode())
            self._discard(worker)
            worker = None
        if worker is None:
            worker = self._worker = _Worker.start(self.memory_mb)
        return worker

    @staticmethod
    def _receive(worker: _Worker) -> tuple[Any, ...] | None:
        """The worker's reply, or None when it died instead of answering."""
        try:
            # A worker writes its whole reply before it exits, so no data now means no reply.
            if not worker.conn.poll(0):
                return None
            return worker.conn.recv()
        except (EOFError, OSError):
            return None

    def _answer(self, filename: str, reply: tuple[Any, ...]) -> ParsedDocument:
        if reply[0] == OK:
            return reply[1]
        raise self._failure(filename, reply)

    def _failure(self, filename: str, reply: tuple[Any, ...]) -> ParseError:
        kind = reply[0]
        if kind == PARSE_ERROR:
            return ParseError(reply[1], reply[2])
        if kind in (OUT_OF_MEMORY, OUT_OF_MEMORY_LEAVING):
            return ParseError(filename, memory_reason(self.memory_mb))
        if kind == FAILED:
            return ParseError(filename, f"the parser failed on this file: {reply[1]}")
        return ParseError(filename, f"the parse worker sent an unexpected reply ({kind!r})")

    def _discard(self, worker: _Worker) -> None:
        """Kill a worker that cannot serve the next file (timed out, dead, or out of step)."""
        if self._worker is worker:
            self._worker = None
        worker.kill()

    def _forget_after_fork(self) -> None:
        worker, self._worker = self._worker, None
        self._lock = threading.Lock()  # a lock held by another thread at fork time would never be released
        if worker is not None:
            worker.forget()

    def _close_at_exit(self) -> None:
        # Not through the lock: a parse still running in another thread must not hold up the exit.
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()


def _close_all_at_exit() -> None:
    for parser in list(_live_parsers):
        parser._close_at_exit()


def _forget_all_after_fork() -> None:
    for parser in list(_live_parsers):
        parser._forget_after_fork()


atexit.register(_close_all_at_exit)
os.register_at_fork(after_in_child=_forget_all_after_fork)


# --------------------------------------------------------------------------- the worker side


def worker_main(conn: Connection, *, memory_mb: int | None, parent_pid: int, death_signal: bool) -> None:
    """The worker process: answer parse requests until the socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    _exit_with_parent(parent_pid, use_death_signal=death_signal)
    # Library warnings (pypdf's about damaged files) would go to the terminal unformatted; the
    # parent reports what matters as the file's ParseError.
    logging.getLogger().addHandler(logging.NullHandler())
    for module in PARSER_LIBRARIES:
        __import__(module)
    if memory_mb is not None:
        _cap_memory(memory_mb * MIB)
    conn.send((READY,))
    while True:
        try:
            filename = conn.recv()
        except (EOFError, OSError):
            return  # the parent closed the socket, or is gone
        try:
            data = conn.recv_bytes()
        except MemoryError:
            # The rest of the file is still in the socket, so this conversation cannot go on: say
            # why and exit; the parent starts a fresh worker for the next file.
            conn.send((OUT_OF_MEMORY_LEAVING,))
            return
        reply = _parse_in_worker(filename, data)
        del data
        _send_reply(conn, reply)


def _parse_in_worker(filename: str, data: bytes) -> tuple[Any, ...]:
    reply: tuple[Any, ...]
    try:
        return (OK, parsers.parse(filename, data))
    except MemoryError:
        reply = (OUT_OF_MEMORY,)
    except ParseError as error:
        # parsers.parse wraps unforeseen library errors, MemoryError included, into ParseError.
        reply = (OUT_OF_MEMORY,) if _caused_by_memory(error) else (PARSE_ERROR, error.name, error.reason)
    except Exception as exc:  # parse promises ParseError only; anything else is still this file's failure
        reply = (FAILED, f"{type(exc).__name__}: {exc}"[:300])
    if reply[0] == OUT_OF_MEMORY:
        # What the runaway parse left in reference cycles goes now, not under the next file's cap.
        # (Only then: a full collection with pandas loaded costs tens of milliseconds.)
        gc.collect()
    return reply


def _send_reply(conn: Connection, reply: tuple[Any, ...]) -> None:
    try:
        conn.send(reply)  # pickles the whole reply before writing a byte
    except MemoryError:
        del reply
        gc.collect()
        conn.send((OUT_OF_MEMORY,))


def _caused_by_memory(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, MemoryError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _cap_memory(extra_bytes: int) -> None:
    """Cap address space and data segment at their current size plus `extra_bytes`.

    RLIMIT_AS alone counts reservations (thread stacks, allocator arenas) that use no memory;
    RLIMIT_DATA counts the private writable memory a parse really grows. Both are set, each from
    its own baseline, so either catches a runaway parse and neither trips on the libraries.
    """
    usage = _proc_status_bytes()
    for limit, baseline in ((resource.RLIMIT_AS, usage.get("VmSize")), (resource.RLIMIT_DATA, usage.get("VmData"))):
        if baseline is None:  # no /proc (not Linux): a cap without its baseline would trip on the libraries
            continue
        soft, hard = resource.getrlimit(limit)
        wanted = baseline + extra_bytes
        if hard != resource.RLIM_INFINITY:
            wanted = min(wanted, hard)
        if soft == resource.RLIM_INFINITY or wanted < soft:
            resource.setrlimit(limit, (wanted, hard))


def _proc_status_bytes() -> dict[str, int]:
    """VmSize and VmData of this process in bytes (Linux); empty elsewhere."""
    sizes: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmSize", "VmData"):
                    sizes[key] = int(value.split()[0]) * 1024  # "123456 kB"
    except OSError:
        pass
    return sizes


def _exit_with_parent(parent_pid: int, *, use_death_signal: bool) -> None:
    """Make sure this worker does not outlive the process that started it."""
    if use_death_signal:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # not Linux: the watchdog below still applies
            pass
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(0)

    def watch() -> None:
        # Covers a worker started from a thread other than the main one (no death signal) while a
        # parse runs in Python code; an idle worker notices the closed socket on its own.
        while True:
            time.sleep(PARENT_CHECK_INTERVAL_SECONDS)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
