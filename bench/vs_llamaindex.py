"""Ingest vs LlamaIndex: wall time of `ragline ingest` against a LlamaIndex IngestionPipeline, same corpus.

    python bench/vs_llamaindex.py CORPUS [--work bench/out/vs-llamaindex-NAME] [--markdown]

Runs, one after another, each in a fresh child process (so the time includes starting Python
and loading the model, and peak RSS is the child's own), same settings everywhere (250-token
chunks, 38 overlap, MiniLM tokens, batch 32, bundled all-MiniLM-L6-v2 on CPU):
  1. ragline-local:   `ragline ingest CORPUS --source bench --data-dir WORK/ragline-local`
                      with RAGLINE_EMBEDDED_ENGINE=local (qdrant-client's local mode, the engine
                      LlamaIndex's side uses), then the same again with nothing changed;
  2. ragline-default: the same into WORK/ragline-default with no engine override (ragline's
                      embedded default), then again;
  3. llamaindex:      `bench/llamaindex_pipeline.py CORPUS WORK/llamaindex` (see that module),
                      then again.
Ratios are ragline / LlamaIndex wall seconds, for the full ingest and for the unchanged re-run:
below 1 means ragline is faster. Prints one JSON object, or with --markdown a table.

Peak RSS and CPU seconds come from `os.wait4` on each child: the rusage of that child alone.
(`getrusage(RUSAGE_CHILDREN).ru_maxrss` is the largest of all children waited for so far, so it
cannot tell a smaller later child's peak.) The load average before and after is recorded because
the machine is shared: compare CPU seconds as well as wall seconds when it was busy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHUNK_TOKENS = 250
OVERLAP_TOKENS = 38
EMBED_BATCH_SIZE = 32


@dataclass
class ChildRun:
    output: dict
    wall_seconds: float
    cpu_seconds: float
    peak_rss_mb: float


def run_child(argv: list[str], env: dict[str, str]) -> ChildRun:
    """Run `argv` to the end; its printed JSON and what it cost, measured from outside."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=REPO, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode not in (0, 1):  # ragline: 1 = some documents failed, still a finished run
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return ChildRun(json.loads(stdout), wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def ragline_rows(corpus: Path, data_dir: Path, engine: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAGLINE_EMBEDDED_ENGINE"}
    env["RAGLINE_EMBED_BATCH_SIZE"] = str(EMBED_BATCH_SIZE)
    if engine:
        env["RAGLINE_EMBEDDED_ENGINE"] = engine
    argv = [sys.executable, "-m", "ragline.cli", "ingest", str(corpus), "--source", "bench", "--data-dir", str(data_dir),
            "--chunk-tokens", str(CHUNK_TOKENS), "--overlap-tokens", str(OVERLAP_TOKENS), "--json"]
    rows = {}
    for name in ("full", "rerun"):
        child = run_child(argv, env)
        [report] = child.output["runs"]
        rows[name] = {
            **_costs(child),
            "documents": report["added"] + report["updated"] + report["failed"],
            "failed": report["failed"],
            "chunks": report["chunks_embedded"],
            "run_seconds": report["seconds"],
            "stage_seconds": report["timings"],
        }
    return rows


def llamaindex_rows(corpus: Path, work: Path) -> dict:
    argv = [sys.executable, str(REPO / "bench" / "llamaindex_pipeline.py"), str(corpus), str(work),
            "--chunk-tokens", str(CHUNK_TOKENS), "--overlap-tokens", str(OVERLAP_TOKENS)]
    rows = {}
    for name in ("full", "rerun"):
        child = run_child(argv, dict(os.environ))
        result = child.output
        rows[name] = {
            **_costs(child),
            "documents": result["files"],
            "failed": len(result["unreadable"]),
            "chunks": result["nodes"],
            "chunks_total": result["nodes_total"],
            "llamaindex_documents": result["documents"],
            "run_seconds": result["wall_seconds"],
            "stage_seconds": result["seconds"],
        }
    return rows


def _costs(child: ChildRun) -> dict:
    return {"wall_seconds": round(child.wall_seconds, 2), "cpu_seconds": round(child.cpu_seconds, 2),
            "peak_rss_mb": round(child.peak_rss_mb, 1)}


def measure(corpus: Path, work: Path) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M")
    pipelines = {
        "ragline-local": ragline_rows(corpus, work / "ragline-local", engine="local"),
        "ragline-default": ragline_rows(corpus, work / "ragline-default", engine=None),
        "llamaindex": llamaindex_rows(corpus, work / "llamaindex"),
    }
    llama = pipelines["llamaindex"]
    ratios = {
        f"{name}/llamaindex": {
            run: round(rows[run]["wall_seconds"] / llama[run]["wall_seconds"], 3) for run in ("full", "rerun")
        }
        for name, rows in pipelines.items()
        if name != "llamaindex"
    }
    return {
        "corpus": str(corpus),
        "started": started,
        "settings": {"chunk_tokens": CHUNK_TOKENS, "overlap_tokens": OVERLAP_TOKENS, "embed_batch_size": EMBED_BATCH_SIZE},
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "pipelines": pipelines,
        "wall_ratio": ratios,
    }


def markdown(result: dict) -> str:
    llama = result["pipelines"]["llamaindex"]
    lines = [
        "| pipeline | docs | chunks | full ingest (wall / CPU) | peak RSS | unchanged re-run (wall / CPU) | re-run RSS "
        "| full vs LlamaIndex | re-run vs LlamaIndex |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, rows in result["pipelines"].items():
        full, rerun = rows["full"], rows["rerun"]
        if name == "llamaindex":
            ratio_full = ratio_rerun = "1"
        else:
            ratio = result["wall_ratio"][f"{name}/llamaindex"]
            ratio_full, ratio_rerun = f"{ratio['full']:.2f}", f"{ratio['rerun']:.2f}"
        lines.append(
            f"| {name} | {full['documents']:,} | {full['chunks']:,} | {full['wall_seconds']:.1f} s / {full['cpu_seconds']:.1f} s "
            f"| {full['peak_rss_mb']:,.0f} MiB | {rerun['wall_seconds']:.2f} s / {rerun['cpu_seconds']:.2f} s "
            f"| {rerun['peak_rss_mb']:,.0f} MiB | {ratio_full} | {ratio_rerun} |"
        )
    stages = llama["full"]["stage_seconds"]
    lines.append("")
    lines.append("LlamaIndex full run, seconds by stage: " + ", ".join(f"{k} {v}" for k, v in stages.items()) + ".")
    for name, rows in result["pipelines"].items():
        if name != "llamaindex":
            busy = {k: v for k, v in rows["full"]["stage_seconds"].items() if v}
            lines.append(f"{name} full run, seconds by stage: " + ", ".join(f"{k} {v}" for k, v in busy.items()) + ".")
    lines.append(f"Load average before / after: {result['load_average_before']} / {result['load_average_after']} "
                 f"({result['cpus']} CPUs).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--work", type=Path, default=None, help="scratch dir (deleted first)")
    parser.add_argument("--markdown", action="store_true", help="print a table for BENCHMARKS.md instead of JSON")
    args = parser.parse_args()
    corpus = args.corpus.resolve()
    work = (args.work or REPO / "bench" / "out" / f"vs-llamaindex-{corpus.name}").resolve()
    result = measure(corpus, work)
    print(markdown(result) if args.markdown else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
