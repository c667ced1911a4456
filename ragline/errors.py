"""ragline's errors.

    RaglineError
    ├── ConfigError            bad settings or arguments; nothing was done
    ├── SourceError            a source cannot be listed (auth, missing bucket, outage after retries);
    │                          the run stops before deleting anything
    ├── DocumentError          one document cannot be indexed; it is quarantined, the run goes on
    │   ├── FetchError         the bytes could not be read
    │   └── ParseError         the bytes are not a readable document of their format
    ├── SourceBusy             another run of the same source holds its lock
    ├── LockLost               a run's source lock ended under it (its database session died);
    │                          the run stops before its next write, the next run finishes the job
    ├── IndexMismatchError     the collection was built by another model or chunking
    └── MassDeleteRefused      a run would delete more than the allowed share of a source

Store and ledger failures are not caught here: they abort the run, since a run that
cannot write must not pretend it did.
"""


class RaglineError(Exception):
    """Base of every error ragline raises on purpose."""


class ConfigError(RaglineError):
    pass


class SourceError(RaglineError):
    """The source as a whole failed; its listing is incomplete, so nothing may be deleted."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"source {source!r}: {reason}")
        self.source = source
        self.reason = reason


class DocumentError(RaglineError):
    """One document failed; `reason` is written for the person who will fix the file."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


class FetchError(DocumentError):
    pass


class ParseError(DocumentError):
    pass


class SourceBusy(RaglineError):
    """Two runs of one source never overlap: the second one gets this instead of the lock."""


class LockLost(RaglineError):
    """The source lock a run holds was lost mid-run; writing on could overlap another run."""


class IndexMismatchError(RaglineError):
    pass


class MassDeleteRefused(RaglineError):
    pass


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's own message, without what database drivers append (the SQL, its parameters, a link):
    one line a person can read, and no document data dumped into a terminal or a log."""
    line = (str(exc).strip().splitlines() or [""])[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"
