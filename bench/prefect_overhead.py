"""Prefect overhead benchmark: the wall time Prefect adds to one sync run, same folder, same machine.

    python bench/prefect_overhead.py [--corpus samples/corpus] [--runs 3] [--work DIR]

Three ways to run one sync of a folder, each run in a fresh process (as a cron job, `ragline
ingest` or a process worker's flow run would):
  plain       `python -m ragline.cli ingest FOLDER --source bench --data-dir D --json`
  ephemeral   the `sync` flow with PREFECT_API_URL unset: Prefect 3 starts a temporary local server
              (a uvicorn subprocess on 127.0.0.1 with SQLite in a private PREFECT_HOME) for the run
  server      the `sync` flow against a running local `prefect server start` (SQLite, 127.0.0.1)

The corpus is copied to a temp dir and ingested once; then `--runs` rounds of unchanged re-syncs
(modes interleaved in each round, so drift hits all alike), then one full run per mode on a fresh
data dir. Each figure is the median wall time of a mode's runs; overhead = flow − plain. Inside
each flow process the time to import the flow module and the time of the flow call itself are
measured as well, so the overhead splits into start-up and orchestration (task runs, states,
the artifact). Prints one JSON object; progress goes to stderr. Takes 2 to 4 minutes here.

Nothing leaves the machine: see tests/support/prefect_server.py (local-only environment).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.prefect_server import PrefectServer, base_env

SOURCE = "bench"
RUN_TIMEOUT = 300

FLOW_RUN = r"""
import json, sys, time
t0 = time.perf_counter()
from flows.sync import sync
t1 = time.perf_counter()
[report] = sync(folder=sys.argv[1], source=sys.argv[2], data_dir=sys.argv[3])
t2 = time.perf_counter()
print("RESULT " + json.dumps({"import_seconds": t1 - t0, "call_seconds": t2 - t1, "report": report}))
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(mode: str, folder: Path, data_dir: Path, envs: dict[str, dict[str, str]]) -> dict:
    if mode == "plain":
        command = [sys.executable, "-m", "ragline.cli", "ingest", str(folder), "--source", SOURCE,
                   "--data-dir", str(data_dir), "--json"]
    else:
        command = [sys.executable, "-c", FLOW_RUN, str(folder), SOURCE, str(data_dir)]
    started = time.perf_counter()
    proc = subprocess.run(command, check=False, cwd=REPO, env=envs[mode], capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} run exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if mode == "plain":
        [report] = json.loads(proc.stdout)["runs"]
        result = {"report": report}
    else:
        [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        result = json.loads(line[len("RESULT "):])
    result["wall_seconds"] = wall
    return result


def summarize(runs: list[dict]) -> dict:
    out = {"runs": len(runs), "wall_seconds": round(statistics.median(r["wall_seconds"] for r in runs), 2),
           "pipeline_seconds": round(statistics.median(r["report"]["seconds"] for r in runs), 2),
           "all_wall_seconds": [round(r["wall_seconds"], 2) for r in runs]}
    if "call_seconds" in runs[0]:
        out["import_seconds"] = round(statistics.median(r["import_seconds"] for r in runs), 2)
        out["flow_call_seconds"] = round(statistics.median(r["call_seconds"] for r in runs), 2)
    return out


def overheads(summary: dict) -> dict:
    plain = summary["plain"]["wall_seconds"]
    result = {}
    for mode in ("ephemeral", "server"):
        flow = summary[mode]
        result[mode] = {
            "seconds": round(flow["wall_seconds"] - plain, 2),
            "ratio": round(flow["wall_seconds"] / plain, 2),
            # inside the flow process: the flow call beyond the pipeline's own time (task runs,
            # state changes, artifact, the ephemeral server's start-up in that mode)
            "flow_call_minus_pipeline_seconds": round(flow["flow_call_seconds"] - flow["pipeline_seconds"], 2),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "samples" / "corpus")
    parser.add_argument("--runs", type=int, default=3, help="unchanged re-syncs per mode (default 3)")
    parser.add_argument("--work", type=Path, default=None, help="work dir (default: a temp dir, removed after)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ragline-prefect-bench-")) if args.work is None else args.work
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        folder = work / "corpus"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(args.corpus, folder)
        files = sum(1 for p in folder.rglob("*") if p.is_file())

        log("starting a local Prefect server ...")
        with PrefectServer(work / "server") as server:
            log(f"  healthy after {server.startup_seconds:.1f} s at {server.url}")
            envs = {
                "plain": base_env(work / "prefect-plain"),
                "ephemeral": base_env(work / "prefect-ephemeral", PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="true"),
                "server": server.client_env(),
            }
            modes = list(envs)
            resync_dir = work / "data-resync"
            log("initial ingest (not measured) ...")
            initial = run("plain", folder, resync_dir, envs)
            log(f"  {initial['report']['added']} documents added in {initial['wall_seconds']:.1f} s")

            resyncs: dict[str, list[dict]] = {m: [] for m in modes}
            for round_ in range(args.runs):
                for mode in modes:
                    result = run(mode, folder, resync_dir, envs)
                    assert result["report"]["unchanged"] == files and result["report"]["chunks_embedded"] == 0, result
                    resyncs[mode].append(result)
                    log(f"  re-sync {round_ + 1} {mode}: {result['wall_seconds']:.2f} s")

            full: dict[str, list[dict]] = {}
            for mode in modes:
                result = run(mode, folder, work / f"data-full-{mode}", envs)
                assert result["report"]["added"] == files, result
                full[mode] = [result]
                log(f"  full run {mode}: {result['wall_seconds']:.2f} s")
            server_startup = server.startup_seconds

        resync_summary = {m: summarize(r) for m, r in resyncs.items()}
        full_summary = {m: summarize(r) for m, r in full.items()}
        print(json.dumps({
            "corpus": str(args.corpus), "documents": files,
            "note": "wall seconds per run, each run a fresh process; medians; overhead = flow - plain",
            "resync_unchanged": {**resync_summary, "overhead": overheads(resync_summary)},
            "full_run": {**full_summary, "overhead": overheads(full_summary)},
            "prefect_server_startup_seconds": round(server_startup, 2),
            "bench_seconds": round(time.perf_counter() - started, 1),
        }, indent=2))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
