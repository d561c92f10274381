"""End to end, as a user works: JupyterLab on localhost, notebooks/01_roberta_base.ipynb opened in headless Chromium
(driven by Playwright), Run > Run All Cells through the menus with the notebook's own defaults (a seconds-long smoke
run on the real MiniLM), then the run directory, the rendered result table and the saved outputs are checked.

The notebook runs from a copy in a temporary folder (JupyterLab's root), so its run directory (`runs/notebook`,
relative to the notebook) lands there, not in the repository. The server gets a random free port and a random
token (passed in its environment, not on its command line), and is stopped at the end even when the test fails.
A screenshot of the finished notebook is kept beside the test's temporary folder; its path is printed.

Needs Chromium (`apt-get install chromium`; `make test` installs it) and the Python package playwright
(requirements.txt); Playwright's own browser download is not used."""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from lora_nb_utils.paths import repo_root

REPO = repo_root()
NOTEBOOK = "01_roberta_base.ipynb"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RUN_TIMEOUT_S = 150  # the smoke run takes seconds; loading MiniLM and the first tokenization add some more


def _chromium() -> str:
    exe = os.environ.get("LORA_NB_CHROMIUM") or next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if exe is None:
        pytest.fail("Chromium is needed for the JupyterLab test: `apt-get install chromium` (`make test` does it).")
    return exe


class _Token(str):
    """The server's token: its repr (tracebacks, assertion messages) does not show it."""

    def __repr__(self) -> str:
        return "<token>"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(base: str, token: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{_log_tail(log, token)}")
        try:
            req = urllib.request.Request(f"{base}/api/status", headers={"Authorization": f"token {token}"})
            with urllib.request.urlopen(req, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {timeout:.0f}s:\n{_log_tail(log, token)}")


def _log_tail(log: Path, token: str, n: int = 4000) -> str:
    text = log.read_text(errors="replace")[-n:] if log.is_file() else ""
    return text.replace(token, "<token>")


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server whose root is a temporary folder holding a copy of the notebook; yields (url, token,
    root). Config, data, runtime, settings and workspaces folders are temporary too (nothing of the user's)."""
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / NOTEBOOK, root / NOTEBOOK)
    home = tmp_path / "jupyter"
    for d in ("config", "data", "runtime", "settings", "workspaces"):
        (home / d).mkdir(parents=True)
    # No network from the page: no news / update checks (their toasts would cover the notebook).
    (home / "config" / "labconfig").mkdir()
    (home / "config" / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    # Every cell in the DOM (JupyterLab 4 otherwise renders only the cells near the viewport), so that the page
    # can be checked for every output.
    tracker = home / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    token = _Token(secrets.token_hex(24))
    port = _free_port()
    env = {**os.environ, "JUPYTER_TOKEN": token, "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           # the kernels talk to the server over CurveZMQ-encrypted TCP (no plain-text warning in the log)
           "--KernelManager.transport_encryption=auto"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    log = tmp_path / "jupyterlab.log"
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log_fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(base, token, proc, log)
        yield base, token, root, log
    finally:  # stop the server and its kernels, whatever happened
        _stop_server(proc, base, token, home / "runtime")


def _stop_server(proc: subprocess.Popen, base: str, token: str, runtime_dir: Path) -> None:
    """POST /api/shutdown (the server shuts its kernels down), then SIGTERM / SIGKILL its process group, then any
    kernel it left (kernels run in their own sessions; theirs are the connection files in our runtime folder)."""
    if proc.poll() is None:
        try:
            req = urllib.request.Request(f"{base}/api/shutdown", method="POST",
                                         headers={"Authorization": f"token {token}"})
            urllib.request.urlopen(req, timeout=5).close()
            proc.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            continue
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(runtime_dir).encode() in cmdline.read_bytes():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def _keep_screenshot(page, tmp_path: Path, name: str = "jupyterlab_01_roberta_base.png") -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=False)
    return shot


def test_run_all_cells_in_jupyterlab(jupyterlab, tmp_path, capsys):
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("The JupyterLab test needs playwright: pip install -r requirements.txt (`make test` does it).")
    base, token, root, log = jupyterlab
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            console_errors = []
            page.on("pageerror", lambda exc: console_errors.append(str(exc)))
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}", wait_until="domcontentloaded")
            try:
                _run_all_and_check(page, root, token, log)
            finally:
                shot = _keep_screenshot(page, tmp_path)
                with capsys.disabled():
                    print(f"\nJupyterLab screenshot: {shot}")
        finally:
            browser.close()
    assert not console_errors, f"JavaScript errors in JupyterLab: {console_errors[:3]}"


KERNEL_IDLE = re.compile(r"Python 3 \(ipykernel\)\s*\|\s*Idle")


def _kernel_idle(page) -> bool:
    return bool(KERNEL_IDLE.search(page.locator(".jp-StatusBar-Widget").inner_text()))


def _prompts(page) -> list[str]:
    return page.eval_on_selector_all(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt",
                                     "els => els.map(e => e.textContent.trim())")


def _menu(page, menu: str, item: str) -> None:
    """Click a menu of the menu bar, then one of its items (by its exact label)."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(f"^{menu}$")).click()
    page.locator(".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel",
                 has_text=re.compile(f"^{item}$")).click()


def _run_all_and_check(page, root: Path, token: str, log: Path) -> None:
    n_code = sum(c.cell_type == "code" for c in nbformat.read(str(root / NOTEBOOK), as_version=4).cells)
    # the notebook is shown, every code cell in the DOM, and its kernel (python3, from the kernelspec) is idle
    page.locator(".jp-StatusBar-Widget").get_by_text(KERNEL_IDLE).wait_for(timeout=90_000)
    page.wait_for_function("n => document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell').length >= n",
                           arg=n_code, timeout=30_000)
    assert len(_prompts(page)) == n_code

    # Run > Run All Cells, as a user does
    _menu(page, "Run", r"Run All Cells")

    deadline = time.monotonic() + RUN_TIMEOUT_S
    done = False
    while time.monotonic() < deadline:
        prompts = _prompts(page)
        numbered = all(re.fullmatch(r"\[\d+\]:", p) for p in prompts)
        errored = page.locator("[data-mime-type='application/vnd.jupyter.error']").count() > 0
        if (numbered or errored) and _kernel_idle(page):
            done = True
            break
        time.sleep(1)
    assert done, (f"Run All did not finish within {RUN_TIMEOUT_S}s; prompts {_prompts(page)}\n"
                  f"{_log_tail(log, token)}")

    # What the user sees: no error output, no widget placeholder, the summary table with status ok
    outputs = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output")
    text = "\n".join(outputs.all_inner_texts())
    errors = page.locator("[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, f"error output in the notebook:\n{errors.first.inner_text()[:2000]}"
    for bad in ("IProgress not found", "ipywidgets", "Loading widget", "Error displaying widget", "Traceback"):
        assert bad not in text, f"{bad!r} in the notebook's outputs:\n{text[:3000]}"
    assert page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output "
                        "[data-mime-type='application/vnd.jupyter.widget-view+json']").count() == 0
    summary = page.locator(".jp-OutputArea-output table.dataframe", has_text="best_epoch")
    assert summary.count() == 1, f"the result table (summary) is not shown; outputs:\n{text[:3000]}"
    assert re.search(r"status\s+ok", summary.inner_text()), summary.inner_text()
    assert page.locator(".jp-OutputArea-output img").count() >= 1, "the curves figure is not shown"

    # The run directory went next to the notebook copy (the temporary root), finished
    run_dir = root / "runs" / "notebook"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["model"] == "minilm"
    assert (run_dir / "epochs.csv").is_file() and (run_dir / "manifest.json").is_file()

    # The saved notebook (File > Save) holds the same: outputs, no error, no stderr about widgets
    saved = root / NOTEBOOK
    _menu(page, "File", r"Save( Notebook)?")
    page.wait_for_function("() => !document.querySelector('.lm-TabBar-tab.jp-mod-dirty')", timeout=30_000)
    nb, deadline = None, time.monotonic() + 30
    while nb is None or not all(c.execution_count for c in nb.cells if c.cell_type == "code"):
        assert time.monotonic() < deadline, "the saved notebook has no outputs"
        time.sleep(0.3)
        try:
            nb = nbformat.read(str(saved), as_version=4)
        except (ValueError, OSError):  # the server is still writing it
            nb = None
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), [c.execution_count for c in code]
    outs = [o for c in code for o in c.outputs]
    assert not [o for o in outs if o.output_type == "error"]
    stderr = "".join(o.get("text", "") for o in outs if o.output_type == "stream" and o.name == "stderr")
    assert "IProgress" not in stderr and "ipywidgets" not in stderr, stderr[:2000]
    assert not [o for o in outs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
