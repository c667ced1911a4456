"""prefect.yaml against a real local Prefect server: work pool, `prefect deploy --all`, a process worker
running from this checkout, a deployment run that indexes a folder. (test_sync_flow.py covers the
flows themselves on Prefect's test harness; this covers the deployment as production runs it.)

Everything binds 127.0.0.1 and keeps its state in tmp_path; see tests/support/prefect_server.py for
what keeps each child off the network. Each step's wall time is printed (pytest -s) and recorded
as a junit property; on this machine the whole test takes about a minute.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import service_missing
from tests.support.prefect_server import (
    Background,
    PrefectServer,
    prefect_cli,
    prefect_command,
    tail,
)

pytestmark = [pytest.mark.prefect, pytest.mark.model]

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 240  # seconds for the flow run to finish once triggered
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class Steps:
    """Wall time per step, printed and recorded."""

    def __init__(self, record_property):
        self.times: dict[str, float] = {}
        self.record = record_property

    def __call__(self, name: str):
        steps = self

        class _Step:
            def __enter__(self):
                self.started = time.monotonic()

            def __exit__(self, *exc):
                steps.times[name] = round(time.monotonic() - self.started, 2)
                steps.record(f"seconds_{name}", steps.times[name])

        return _Step()


@pytest.fixture
def prefect_server(tmp_path):
    if importlib.util.find_spec("prefect") is None:
        service_missing("the prefect package", ModuleNotFoundError("prefect"))
    # Failing to start is not a missing service: the server is ours to start, so that is an error
    # (PrefectServer raises with the tail of the server's log).
    with PrefectServer(tmp_path / "prefect") as server:
        yield server


def test_deploy_and_run_the_sync_deployment_on_a_local_server(prefect_server, tmp_path, record_property):
    server = prefect_server
    steps = Steps(record_property)
    steps.times["server_start"] = round(server.startup_seconds, 2)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "returns.md").write_text("# Returns\n\nCustomers may return unworn boots within 60 days of delivery.")
    (docs / "shipping.txt").write_text("The warehouse ships orders placed before 2 pm on the same working day.")
    data_dir = tmp_path / "data"
    env = server.client_env(RAGLINE_HOME=str(REPO))

    with steps("work_pool_create"):
        prefect_cli(["work-pool", "create", "ragline", "--type", "process"], env=env)
    with steps("deploy"):
        # Non-interactive; prefect.yaml has no build or push step, and the pull step's
        # {{ $RAGLINE_HOME }} is kept for the worker to resolve (not read here at deploy time).
        deployed = prefect_cli(["deploy", "--all", "--no-prompt"], env=server.client_env(), cwd=REPO)
    assert "ragline-sync/nightly-sample" in deployed.stdout and "ragline-backfill/backfill" in deployed.stdout

    with server.api() as api:
        nightly = api.get("deployments/name/ragline-sync/nightly-sample").raise_for_status().json()
        backfill = api.get("deployments/name/ragline-backfill/backfill").raise_for_status().json()
    [schedule] = nightly["schedules"]
    assert schedule["schedule"]["cron"] == "0 2 * * *" and schedule["schedule"]["timezone"] == "Europe/Berlin"
    assert schedule["active"]
    assert nightly["parameters"] == {"folder": "samples/corpus", "source": "sample", "data_dir": ".ragline"}
    assert nightly["work_pool_name"] == backfill["work_pool_name"] == "ragline"
    assert nightly["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $RAGLINE_HOME }}"}}]
    assert backfill["schedules"] == [] and backfill["entrypoint"] == "flows/sync.py:backfill"
    assert {"full_reindex", "since", "until", "source", "data_dir"} <= set(backfill["parameter_openapi_schema"]["properties"])

    # The worker runs elsewhere than the checkout: the pull step must move the run into RAGLINE_HOME.
    worker_cwd = tmp_path / "worker"
    worker_cwd.mkdir()
    worker = Background(
        prefect_command("worker", "start", "--pool", "ragline", "--type", "process", "--install-policy", "never",
                        "--name", "test-worker"),
        env=server.client_env(RAGLINE_HOME=str(REPO), PREFECT_WORKER_QUERY_SECONDS="1"),
        log=tmp_path / "worker.log", cwd=worker_cwd,
    )
    with worker:
        with steps("deployment_run_cli"):
            created = prefect_cli(
                ["deployment", "run", "ragline-sync/nightly-sample", "--param", f"folder={docs}",
                 "--param", "source=deploytest", "--param", f"data_dir={data_dir}"],
                env=env,
            )
        match = re.search(r"UUID:\s*([0-9a-f-]{36})", created.stdout)
        assert match, created.stdout
        run_id = match.group(1)

        with steps("flow_run_to_terminal"), server.api() as api:
            deadline = time.monotonic() + RUN_TIMEOUT
            state, seen = None, []
            while time.monotonic() < deadline:
                run = api.get(f"flow_runs/{run_id}").raise_for_status().json()
                state = run["state_type"]
                if not seen or seen[-1][0] != state:
                    seen.append((state, round(time.monotonic() - deadline + RUN_TIMEOUT, 1)))
                if state in TERMINAL:
                    break
                assert worker.running(), f"worker exited {worker.proc.returncode}:\n{tail(worker.log)}"
                time.sleep(1)
        steps.times["states"] = seen
        print(f"\nflow run {run_id} states (s after trigger): {seen}")
        assert state == "COMPLETED", (
            f"flow run ended {state} (after {seen}):\n--- worker log ---\n{tail(worker.log, 8000)}")
        assert run["parameters"]["data_dir"] == str(data_dir)

        with server.api() as api:
            artifacts = api.post("artifacts/filter", json={"artifacts": {"key": {"any_": ["ragline-sync-deploytest"]}}}
                                 ).raise_for_status().json()
        assert artifacts and artifacts[0]["flow_run_id"] == run_id
        table = artifacts[0]["data"]
        table = json.loads(table) if isinstance(table, str) else table
        assert {"what": "added", "count": 2} in table

    with steps("check_index"):
        from ragline.components import build_store
        from ragline.config import Settings

        store = build_store(Settings(data_dir=data_dir))
        try:
            points = store.count({"source": "deploytest"})
        finally:
            store.close()
        status = subprocess.run([sys.executable, "-m", "ragline.cli", "status", "--data-dir", str(data_dir), "--json"],
                                capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env, check=False)
    assert points > 0
    assert status.returncode == 0, status.stderr
    [source] = json.loads(status.stdout)["sources"]
    assert (source["name"], source["documents"], source["points"]) == ("deploytest", 2, points)
    assert source["last_run"]["status"] == "ok" and source["last_run"]["added"] == 2

    print(f"step timings (s): {json.dumps(steps.times)}")
