"""Parse isolation (issue 7, "Isolation"): real hostile files against the real parsers in a worker process.

- a PDF crafted to hang pypdf is cut off at the timeout, promptly, and the next file parses;
- a CSV crafted to expand to gigabytes is stopped at the memory cap, the parent's memory untouched;
- a worker killed (between files or in the middle of one) costs at most that one file;
- the sample corpus and damaged files come back exactly as `parsers.parse` gives them;
- a 200 MB file crosses the socket whole; several threads can share one parser;
- close(), a normal exit, and a parent killed mid-parse leave no worker process behind.
"""

from __future__ import annotations

import io
import os
import pickle
import resource
import signal
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from ragline import parsers
from ragline.config import Settings
from ragline.errors import ParseError
from ragline.isolation import IsolatedParser, build_parser
from ragline.types import ParsedDocument

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
MiB = 1024 * 1024

SMALL_MD = ("note.md", b"# Leave policy\n\nEmployees get 25 days of annual leave.\n")


# --------------------------------------------------------------------------- hostile files


def hanging_pdf(pages: int = 2000, drawing_ops: int = 100_000) -> bytes:
    """A valid PDF whose pages share one content stream of `drawing_ops` path operators and one
    text operator. pypdf 7 refuses the classic bombs (a 75 MB inflate limit, a 2 M-element parse
    budget per stream), but re-parses the shared stream for every page: about a second of pure
    Python per page here, so 2,000 pages keep text extraction busy for half an hour or more, in a
    file of under half a megabyte and with flat memory."""
    content = zlib.compress(b"0 0 m " * drawing_ops + b"BT /F1 12 Tf (x) Tj ET", 9)
    font = b"<< /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >>"
    kids = " ".join(f"{4 + i} 0 R" for i in range(pages)).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Count %d /Kids [%s] >>" % (pages, kids),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(content), content),
        *[b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R /Resources %s >>" % font]
        * pages,
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.writelines(b"%010d 00000 n \n" % offset for offset in offsets)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def exploding_csv(rows: int = 5000, columns: int = 100, name_length: int = 1000) -> bytes:
    """About a megabyte of CSV that the parser turns into rows * columns * name_length bytes of
    text: every row is rendered as "column: value; ...", repeating the long column names
    (5,000 rows -> about 500 MB of text, plus pandas' copy of the cells)."""
    header = ",".join(f"c{i:03d}" + "x" * (name_length - 4) for i in range(columns))
    row = ",".join("1" for _ in range(columns))
    return (header + "\n" + "\n".join([row] * rows) + "\n").encode()


def broken_files() -> dict[str, bytes]:
    """Damaged inputs whose ParseError (name and reason) must come back from the worker unchanged."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", b"<not-a-docx")
    good_pdf = hanging_pdf(pages=1, drawing_ops=10)
    return {
        "truncated.pdf": good_pdf[: len(good_pdf) // 3],
        "no-header.pdf": b"this is not a PDF at all",
        "not-a-zip.docx": b"plain text pretending to be a DOCX",
        "broken-xml.docx": buffer.getvalue(),
        "empty.txt": b"",
        "binary.txt": bytes(range(256)) * 64,
        "notes.rtf": b"{\\rtf1 unsupported}",
        "README": b"no extension",
    }


# --------------------------------------------------------------------------- helpers


def parse_outcome(parse, filename: str, data: bytes) -> ParsedDocument | tuple[str, str]:
    """The document, or the ParseError's (name, reason): what a caller of the contract sees."""
    try:
        return parse(filename, data)
    except ParseError as error:
        return (error.name, error.reason)


def process_gone(pid: int, started: float, timeout: float = 10.0) -> bool:
    """True once `pid` no longer runs (a zombie waiting for a reaper counts as gone; so does a
    reused pid, told apart by its start time)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            process = psutil.Process(pid)
            if process.create_time() != started or process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def cpu_grows(pid: int, *, by: float, within: float) -> bool:
    """True once `pid` has used `by` more seconds of CPU (it is busy), polling for up to `within` s."""
    process = psutil.Process(pid)
    baseline = sum(process.cpu_times()[:2])
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if sum(process.cpu_times()[:2]) - baseline >= by:
            return True
    return False


def start_time(pid: int) -> float:
    return psutil.Process(pid).create_time()


def sample_files() -> Iterator[Path]:
    return (path for path in sorted(SAMPLES.rglob("*")) if path.is_file())


@pytest.fixture
def parser() -> Iterator[IsolatedParser]:
    """A parser of its own, for tests that kill or interrupt its worker."""
    with IsolatedParser(timeout_seconds=60, memory_mb=1024) as isolated:
        yield isolated


@pytest.fixture(scope="module")
def shared_parser() -> Iterator[IsolatedParser]:
    """One worker for the tests that only parse (starting one costs a second or two)."""
    with IsolatedParser(timeout_seconds=60, memory_mb=1024) as isolated:
        yield isolated


# --------------------------------------------------------------------------- time limit


def test_a_pdf_crafted_to_hang_is_cut_off_at_the_timeout_and_the_next_file_parses():
    # The same construction with one page is a valid PDF with text: what fails below is time.
    one_page = parsers.parse("one-page.pdf", hanging_pdf(pages=1, drawing_ops=1000))
    assert [block.text for block in one_page.blocks] == ["x"]

    hostile = hanging_pdf()
    assert len(hostile) < 600_000
    with IsolatedParser(timeout_seconds=2) as isolated:
        isolated.parse(*SMALL_MD)  # the worker is up: what is timed below is the hostile file alone
        first_worker = isolated.worker_pid
        assert first_worker is not None
        first_started = start_time(first_worker)

        began = time.monotonic()
        with pytest.raises(ParseError) as caught:
            isolated.parse("quarterly-report.pdf", hostile)
        elapsed = time.monotonic() - began

        assert caught.value.name == "quarterly-report.pdf"
        assert "stopped after 2 s" in caught.value.reason
        assert "RAGLINE_PARSE_TIMEOUT_SECONDS" in caught.value.reason
        assert "crafted to hang" in caught.value.reason
        assert 2 <= elapsed < 2 + 4
        assert process_gone(first_worker, first_started, timeout=1)  # killed and reaped at once

        handbook = (SAMPLES / "corpus/hr/employee-handbook.pdf").read_bytes()
        assert isolated.parse("employee-handbook.pdf", handbook) == parsers.parse("employee-handbook.pdf", handbook)
        assert isolated.worker_pid not in (None, first_worker)


# --------------------------------------------------------------------------- memory cap


def test_a_file_that_would_exceed_the_memory_cap_fails_alone_and_the_parent_is_untouched():
    small = exploding_csv(rows=100)
    bomb = exploding_csv()
    assert len(bomb) < 2 * MiB
    with IsolatedParser(timeout_seconds=120, memory_mb=300) as isolated:
        # The same construction, small: parses under the very same cap (so the cap, not the
        # format, is what stops the big one), and comes back exactly as parsed in-process.
        assert isolated.parse("stores.csv", small) == parsers.parse("stores.csv", small)
        worker = isolated.worker_pid
        parent_peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

        with pytest.raises(ParseError) as caught:
            isolated.parse("stores-export.csv", bomb)

        assert caught.value.name == "stores-export.csv"
        assert "needed more than 300 MiB" in caught.value.reason
        assert "RAGLINE_PARSE_MEMORY_MB" in caught.value.reason
        parent_peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        assert parent_peak_after - parent_peak_before < 50 * MiB  # the ~500 MB were the worker's
        # The MemoryError was raised inside the worker, which reported it and survived.
        assert isolated.worker_pid == worker
        assert isolated.parse(*SMALL_MD) == parsers.parse(*SMALL_MD)


def test_a_file_whose_bytes_alone_overflow_the_cap_fails_as_memory_and_the_next_file_parses():
    # 15 MiB under a 16 MiB cap: receiving it (the bytes plus the socket reader's buffer) needs
    # more, so the worker runs out while reading, says so, and exits (the rest of the file is
    # still in the socket); the next file gets a fresh worker.
    with IsolatedParser(memory_mb=16) as isolated:
        isolated.parse(*SMALL_MD)
        first_worker = isolated.worker_pid
        with pytest.raises(ParseError) as caught:
            isolated.parse("export.txt", b"word " * (3 * MiB))
        assert caught.value.name == "export.txt"
        assert "needed more than 16 MiB" in caught.value.reason
        assert isolated.parse(*SMALL_MD) == parsers.parse(*SMALL_MD)
        assert isolated.worker_pid != first_worker


def test_a_file_larger_than_the_memory_cap_is_refused_without_reaching_the_worker():
    with IsolatedParser(memory_mb=16) as isolated:
        with pytest.raises(ParseError) as caught:
            isolated.parse("dump.txt", b"a" * (17 * MiB))
        assert caught.value.name == "dump.txt"
        assert "17 MiB" in caught.value.reason and "RAGLINE_PARSE_MEMORY_MB" in caught.value.reason
        assert isolated.worker_pid is None  # nothing was started for it


# --------------------------------------------------------------------------- dead workers


def test_a_worker_killed_between_files_is_replaced_and_the_next_file_parses(parser):
    assert parser.parse(*SMALL_MD) == parsers.parse(*SMALL_MD)
    killed = parser.worker_pid
    os.kill(killed, signal.SIGKILL)
    # Wait until it is really dead without reaping it (the parser does that). Not a zombie check:
    # a killed multi-threaded process shows as a zombie while its other threads still hold its socket.
    os.waitid(os.P_PID, killed, os.WEXITED | os.WNOWAIT)

    assert parser.parse(*SMALL_MD) == parsers.parse(*SMALL_MD)  # not blamed on this file
    assert parser.worker_pid != killed


@pytest.mark.parametrize(
    ("signum", "expected"),
    [(signal.SIGKILL, "killed (SIGKILL)"), (signal.SIGSEGV, "crashed on this file (SIGSEGV)")],
)
def test_a_worker_that_dies_in_the_middle_of_a_file_fails_that_file_only(parser, signum, expected):
    parser.parse(*SMALL_MD)
    victim = parser.worker_pid
    killer = threading.Timer(1.0, os.kill, (victim, signum))
    killer.start()
    try:
        began = time.monotonic()
        with pytest.raises(ParseError) as caught:
            parser.parse("slow.pdf", hanging_pdf())
    finally:
        killer.cancel()
    assert time.monotonic() - began < 10  # noticed at once, not at the 60 s timeout
    assert caught.value.name == "slow.pdf"
    assert expected in caught.value.reason

    assert parser.parse(*SMALL_MD) == parsers.parse(*SMALL_MD)
    assert parser.worker_pid != victim


class Cancelled(BaseException):
    """What a cancelled task or Ctrl-C raises in the thread that waits for the worker."""


def test_a_parse_interrupted_in_the_parent_does_not_hand_its_late_reply_to_the_next_file(parser):
    parser.parse(*SMALL_MD)
    interrupted_worker = parser.worker_pid
    slow_but_valid = hanging_pdf(pages=3)  # a few seconds of work, then a real document

    def cancel(signum, frame):
        raise Cancelled

    previous = signal.signal(signal.SIGALRM, cancel)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(Cancelled):
            parser.parse("slow.pdf", slow_but_valid)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    # The PDF's document is still on its way from that worker: the next file must not get it.
    assert parser.parse(*SMALL_MD) == parsers.parse(*SMALL_MD)
    assert parser.worker_pid != interrupted_worker


# --------------------------------------------------------------------------- same results as in-process


def xlsx_workbook() -> bytes:
    """The one supported format the sample corpus lacks: two sheets, one of a single row."""
    from openpyxl import Workbook

    workbook = Workbook()
    stores = workbook.active
    stores.title = "Stores"
    stores.append(["store", "city", "opened"])
    stores.append(["Alder Ridge", "Portland", 2019])
    stores.append(["Birch Lane", "Tacoma", 2021])
    workbook.create_sheet("Notes").append(["Figures are unaudited"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def test_the_sample_corpus_parses_identically_isolated_and_in_process(shared_parser):
    files = [(path.name, path.read_bytes()) for path in sample_files()]
    assert len(files) >= 20
    files.append(("stores.xlsx", xlsx_workbook()))
    parsed = 0
    for filename, data in files:
        direct = parse_outcome(parsers.parse, filename, data)
        assert parse_outcome(shared_parser.parse, filename, data) == direct, filename
        parsed += isinstance(direct, ParsedDocument)
    assert parsed >= 20  # documents with text, not only errors, were compared


def test_damaged_files_come_back_with_the_same_parse_error(shared_parser):
    for filename, data in broken_files().items():
        direct = parse_outcome(parsers.parse, filename, data)
        assert isinstance(direct, tuple), f"{filename} was meant to fail"
        assert parse_outcome(shared_parser.parse, filename, data) == direct, filename
    assert shared_parser.parse(*SMALL_MD) == parsers.parse(*SMALL_MD)  # errors cost the worker nothing


def test_a_200_mb_file_crosses_to_the_worker_whole():
    # Spaces between markers: the parser collapses them, so what comes back is small, and each
    # marker proves that its part of the 200 MB arrived, in order.
    markers = [f"M{i:02d}" for i in range(10)]
    gap = b" " * (20 * MiB)
    data = b"BEGIN " + b"".join(marker.encode() + gap for marker in markers) + b"END"
    assert len(data) > 200 * MiB
    with IsolatedParser(timeout_seconds=120, memory_mb=2048) as isolated:
        document = isolated.parse("big.txt", data)
    assert [block.text for block in document.blocks] == [" ".join(["BEGIN", *markers, "END"])]


def test_threads_sharing_one_parser_each_get_their_own_document(shared_parser):
    texts = {f"doc-{i}.md": f"# Title {i}\n\nBody of document number {i}.\n".encode() for i in range(24)}
    results: dict[str, ParsedDocument] = {}

    def work(names: list[str]) -> None:
        for name in names:
            results[name] = shared_parser.parse(name, texts[name])

    names = sorted(texts)
    threads = [threading.Thread(target=work, args=(names[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == {name: parsers.parse(name, data) for name, data in texts.items()}


def test_per_file_overhead_is_a_round_trip_not_a_process(shared_parser):
    filename, data = SMALL_MD
    shared_parser.parse(filename, data)
    first_worker = shared_parser.worker_pid

    def per_file(parse) -> float:
        rounds = []
        for _ in range(5):
            began = time.perf_counter()
            for _ in range(40):
                parse(filename, data)
            rounds.append((time.perf_counter() - began) / 40)
        return statistics.median(rounds)

    overhead = per_file(shared_parser.parse) - per_file(parsers.parse)
    print(f"isolated parse overhead: {overhead * 1000:.2f} ms per small file")
    assert overhead < 0.025  # about 0.3 ms on an idle 2-core machine; a process per file costs seconds
    assert shared_parser.worker_pid == first_worker  # one long-lived worker served all 200 files


# --------------------------------------------------------------------------- settings


def test_build_parser_follows_the_settings():
    assert build_parser(Settings(parse_isolation=False)) is parsers.parse
    isolated = build_parser(Settings(parse_isolation=True, parse_timeout_seconds=7, parse_memory_mb=512))
    try:
        assert isinstance(isolated, IsolatedParser)
        assert (isolated.timeout_seconds, isolated.memory_mb) == (7, 512)
        assert isolated(*SMALL_MD) == parsers.parse(*SMALL_MD)
    finally:
        isolated.close()


def test_a_pickled_parser_carries_its_limits_and_starts_its_own_worker(shared_parser):
    shared_parser.parse(*SMALL_MD)
    copy = pickle.loads(pickle.dumps(shared_parser))  # what a dask or process-pool task receives
    try:
        assert (copy.timeout_seconds, copy.memory_mb) == (shared_parser.timeout_seconds, shared_parser.memory_mb)
        assert copy.worker_pid is None
        assert copy.parse(*SMALL_MD) == parsers.parse(*SMALL_MD)
        assert copy.worker_pid != shared_parser.worker_pid
        assert shared_parser.parse(*SMALL_MD) == parsers.parse(*SMALL_MD)  # the original's worker is untouched
    finally:
        copy.close()


def test_settings_defaults_and_environment(monkeypatch):
    for name in ("RAGLINE_PARSE_TIMEOUT_SECONDS", "RAGLINE_PARSE_MEMORY_MB", "RAGLINE_PARSE_ISOLATION"):
        monkeypatch.delenv(name, raising=False)
    defaults = Settings()
    assert (defaults.parse_isolation, defaults.parse_timeout_seconds, defaults.parse_memory_mb) == (True, 120, 2048)
    monkeypatch.setenv("RAGLINE_PARSE_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("RAGLINE_PARSE_MEMORY_MB", "300")
    monkeypatch.setenv("RAGLINE_PARSE_ISOLATION", "false")
    configured = Settings()
    assert (configured.parse_isolation, configured.parse_timeout_seconds, configured.parse_memory_mb) == (
        False, 2.5, 300)


# --------------------------------------------------------------------------- no worker left behind


def test_close_leaves_no_worker_and_a_later_parse_starts_a_new_one():
    isolated = IsolatedParser()
    assert isolated.worker_pid is None  # started lazily
    isolated.parse(*SMALL_MD)
    pid = isolated.worker_pid
    started = start_time(pid)
    assert pid in {child.pid for child in psutil.Process().children()}
    isolated.close()
    assert isolated.worker_pid is None
    assert process_gone(pid, started, timeout=0)  # already reaped by close()
    isolated.close()  # twice is harmless

    with isolated:
        assert isolated.parse(*SMALL_MD) == parsers.parse(*SMALL_MD)
        assert isolated.worker_pid not in (None, pid)
    assert isolated.worker_pid is None


# The parent scripts below have no `if __name__ == "__main__"` guard on purpose: the worker must
# not re-run its parent's main script (multiprocessing's spawn would).
_PARENT_SCRIPT = """
import os, sys, threading
from ragline.isolation import IsolatedParser

mode = sys.argv[1]
parser = IsolatedParser(timeout_seconds=600)
if mode == "busy-started-in-thread":
    # Started from a thread that ends at once: the worker must outlive that thread.
    starter = threading.Thread(target=parser.parse, args=("a.md", b"# a\\n\\nb\\n"))
    starter.start()
    starter.join()
else:
    parser.parse("a.md", b"# a\\n\\nb\\n")
print(parser.worker_pid, flush=True)
if mode == "exit":
    sys.exit(0)  # no close(): the atexit hook stops the worker
if mode == "hard-exit":
    os._exit(0)  # no atexit hooks: the worker sees its socket close
with open(sys.argv[2], "rb") as hostile:
    data = hostile.read()
print("parsing", flush=True)
parser.parse("hang.pdf", data)  # killed by the test while the worker is busy
"""


@pytest.mark.parametrize("mode", ["exit", "hard-exit", "busy", "busy-started-in-thread"])
def test_the_worker_does_not_outlive_its_parent(tmp_path, mode):
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(_PARENT_SCRIPT))
    hostile = tmp_path / "hang.pdf"
    hostile.write_bytes(hanging_pdf())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen(
        [sys.executable, str(script), mode, str(hostile)], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        worker = int(parent.stdout.readline())
        started = start_time(worker)
        if mode.startswith("busy"):
            assert parent.stdout.readline().strip() == "parsing"
            assert cpu_grows(worker, by=0.2, within=20)  # deep in pypdf now
            parent.kill()
        parent.wait(60)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    gone = process_gone(worker, started, timeout=10)
    if not gone:  # do not leave it grinding through the hostile PDF for the rest of the session
        psutil.Process(worker).kill()
    assert gone, f"worker {worker} outlived its parent ({mode})"
    if mode == "exit":
        assert parent.returncode == 0, parent.stderr.read()
