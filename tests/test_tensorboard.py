"""The trace viewer: a real TensorBoard with torch-tb-profiler, queried over HTTP and in Chromium."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

import pytest

from bench.passes.profiling import trace_folder_name
from tests.browser import is_blank, open_page
from tests.helpers import ROOT

CASE = "train_step[fashion_mlp-adadelta-cpu-eager-b64]"
PLUGIN = "/data/plugin/pytorch_profiler"
START_TIMEOUT_S = 120  # TensorBoard start plus the plugin parsing four traces, on 2 slow cores


def viewer_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "reports.tensorboard", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode())


@dataclass
class Server:
    proc: subprocess.Popen
    base: str
    run: str  # the case's TensorBoard run: <run folder>/traces/<case folder>
    output: list[str] = field(default_factory=list)

    def plugin(self, route: str, **params: str):
        return get(f"{self.base}{PLUGIN}/{route}?{urllib.parse.urlencode(params)}")


def wait_for_run(server: Server) -> None:
    """Poll the plugin until it has loaded the case's run (bounded; fails if the server died)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail("the viewer exited early:\n" + "".join(server.output))
        try:
            runs = server.plugin("runs")
            if server.run in runs["runs"] and not runs["loading"]:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.5)
    pytest.fail(f"TensorBoard did not list {server.run} within {START_TIMEOUT_S} s:\n" + "".join(server.output))


@pytest.fixture(scope="module")
def server(profile_run):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install -e .[profile])")
    pytest.importorskip("torch_tb_profiler", reason="torch-tb-profiler is not installed (pip install -e .[profile])")
    port = free_port()
    proc = subprocess.Popen(viewer_cmd(str(profile_run.results_dir), "--port", str(port)), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    run = f"{profile_run.run_dir.name}/traces/{trace_folder_name(CASE)}"
    srv = Server(proc, f"http://127.0.0.1:{port}", run)
    # Drain the output in the background so a chatty server never blocks on a full pipe.
    reader = threading.Thread(target=lambda: srv.output.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for_run(srv)
        yield srv
    finally:
        # SIGTERM, as a service manager stops it (SIGINT may be ignored in a background job).
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        reader.join(timeout=5)
    assert proc.returncode == 0, "".join(srv.output)
    assert "Traceback" not in "".join(srv.output)


@pytest.mark.slow
def test_viewer_prints_the_local_url_to_open(server):
    printed = "".join(server.output)
    assert f"open {server.base}/#pytorch_profiler" in printed


@pytest.mark.slow
def test_profiler_plugin_serves_the_case_and_its_operators(server):
    assert server.run in server.plugin("runs")["runs"]
    assert "Operator" in server.plugin("views", run=server.run)
    workers = server.plugin("workers", run=server.run, view="Overview")
    assert workers, "no worker for the run"
    spans = server.plugin("spans", run=server.run, worker=workers[0])
    assert spans, "no span for the worker"
    where = dict(run=server.run, worker=workers[0], span=spans[0])
    overview = server.plugin("overview", **where)
    assert len(overview["steps"]["rows"]) == 3  # the profiler's three active steps
    operation = server.plugin("operation", group_by="Operation", **where)
    names = {row[0] for row in operation["host_self_time"]["rows"]}
    assert {"aten::addmm", "aten::mm"} <= names


@pytest.mark.slow
def test_chromium_renders_the_profiler_page_for_the_run(server, tmp_path):
    with open_page(f"{server.base}/#pytorch_profiler") as (page, errors):
        frame = page.frame_locator("iframe").first
        # The plugin's page asks the server for its runs and shows the first; pick the case's
        # run as a user would, from the Runs menu.
        first = server.plugin("runs")["runs"][0]
        frame.get_by_text(first, exact=True).first.click(timeout=60_000)
        frame.get_by_role("option", name=server.run, exact=True).click(timeout=10_000)
        frame.get_by_role("option").first.wait_for(state="detached", timeout=10_000)  # menu gone
        worker = server.plugin("workers", run=server.run, view="Overview")[0]
        frame.get_by_text(worker).first.wait_for(timeout=30_000)
        shot = tmp_path / "profiler.png"
        page.locator("iframe").first.screenshot(path=str(shot), animations="disabled")
        text = frame.locator("body").inner_text()
    assert not is_blank(shot)
    assert server.run in text and "Overview" in text
    # Offline, the plugin's charts cannot load Google Charts (www.gstatic.com): expected here;
    # no other request may fail.
    unexpected = [e for e in errors.requests if "gstatic.com" not in e]
    assert not unexpected, unexpected


def run_viewer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(viewer_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=120)


def assert_refused(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_missing_or_empty_folder_is_refused(tmp_path):
    assert_refused(run_viewer(str(tmp_path / "nope")), f"error: {tmp_path / 'nope'}: no such folder")
    assert_refused(run_viewer(str(tmp_path)), f"error: {tmp_path}: no profiler traces")
    empty_case = tmp_path / "run" / "traces" / "forward.lenet-cpu-eager-b64"
    empty_case.mkdir(parents=True)
    (tmp_path / "run" / "traces" / "other").mkdir()
    (tmp_path / "run" / "traces" / "other" / "w.1.pt.trace.json").write_text('{"traceEvents": []}')
    assert_refused(run_viewer(str(tmp_path)), f"{empty_case}: empty trace folder")


@pytest.mark.slow
def test_corrupt_trace_is_refused(profile_run, tmp_path):
    (trace,) = (profile_run.run_dir / "traces" / trace_folder_name(CASE)).iterdir()
    broken = tmp_path / "run" / "traces" / "case" / trace.name
    broken.parent.mkdir(parents=True)
    broken.write_bytes(trace.read_bytes()[:200])  # cut short, as by a full disk
    assert_refused(run_viewer(str(tmp_path)), f"{broken}: corrupt trace")


@pytest.mark.slow
def test_port_in_use_or_invalid_is_refused(profile_run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_refused(run_viewer(str(profile_run.results_dir), "--port", str(port)),
                       f"port {port} on 127.0.0.1 is already in use")
    assert_refused(run_viewer(str(profile_run.results_dir), "--port", "70000"),
                   "invalid port 70000; valid ports are 1-65535")
