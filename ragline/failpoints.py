"""Named points on the write path where a test makes the process die or fail, to prove that a crash
or an outage at any of them loses nothing (tests/hardening/test_chaos.py).

Off unless RAGLINE_FAILPOINT names one point, read once when the process starts:

    RAGLINE_FAILPOINT=upsert.after          die (SIGKILL, no cleanup) the first time the point is reached
    RAGLINE_FAILPOINT=upsert.after:3        ... the third time
    RAGLINE_FAILPOINT=upsert.after:3:raise  raise FailpointError there instead (a failing dependency)

SIGKILL is the honest crash: no `finally`, no atexit, no flush; what survives is what was durable.
A disabled point costs one comparison. POINTS lists every name, so a test can tell a typo from a
point the run never reached.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "sync.locked",  # the source lock is held, the run row exists
    "listing.loaded",  # the listing is in the ledger, nothing planned yet
    "fetch.before",  # about to fetch one document's bytes
    "fetch.after",  # its bytes are read, not parsed
    "pending.marked",  # new documents' pending rows committed, nothing upserted
    "embed.after",  # vectors computed for a batch, nothing upserted
    "upsert.before",
    "upsert.inside",  # the store has taken part of a batch (between sub-batches)
    "upsert.after",  # the batch's points are in the store, older versions not yet deleted
    "versions.deleted",  # older versions' chunks deleted, ledger not yet told
    "ledger.record.inside",  # the ledger's write of a batch is sent, not committed
    "ledger.recorded",  # the batch is committed in the ledger
    "failure.recorded",  # a quarantined document's failure is committed
    "fingerprints.updated",  # touched-but-identical documents' fingerprints committed
    "gone.before",  # about to delete documents gone from the source
    "gone.store_deleted",  # their chunks are gone from the store, the ledger still lists them
    "gone.ledger_deleted",  # and from the ledger
    "optimize.before",
    "optimize.after",
    "cursor.before",  # everything is indexed, the source cursor not yet advanced
    "cursor.after",  # the cursor is advanced, the run not yet recorded as finished
    "run.finishing",  # about to record the run's end
)


class FailpointError(RuntimeError):
    """What an armed `raise` point throws: stands for a dependency failing at that moment."""


def _parse(spec: str | None) -> tuple[str, int, str] | None:
    if not spec:
        return None
    name, _, rest = spec.partition(":")
    count, _, action = rest.partition(":")
    if name not in POINTS:
        raise ValueError(f"RAGLINE_FAILPOINT={spec!r}: no failpoint named {name!r}; known: {', '.join(POINTS)}")
    if action not in ("", "kill", "raise"):
        raise ValueError(f"RAGLINE_FAILPOINT={spec!r}: action must be kill or raise, not {action!r}")
    return name, int(count or 1), action or "kill"


_armed = _parse(os.environ.get("RAGLINE_FAILPOINT"))
_reached = 0


def arm(spec: str | None) -> None:
    """Arm a point in this process (in-process tests); None disarms."""
    global _armed, _reached
    _armed, _reached = _parse(spec), 0


def failpoint(name: str) -> None:
    global _reached
    if _armed is None or _armed[0] != name:
        return
    _reached += 1
    if _reached != _armed[1]:
        return
    if _armed[2] == "raise":
        raise FailpointError(f"failpoint {name} (RAGLINE_FAILPOINT)")
    os.kill(os.getpid(), signal.SIGKILL)
