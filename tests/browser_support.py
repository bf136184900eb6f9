"""Helpers for the real-browser test: a throwaway JupyterLab server and Debian's Chromium.

The server runs on 127.0.0.1, a free port and a random token, with its own config, data,
runtime, settings and workspace folders under a temporary directory, so nothing of the user's
Jupyter setup (or of an earlier run) leaks in, and JupyterLab's news prompt is off.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

# Debian's package `chromium` (Playwright's own browser download is not used); APPSNEO_CHROMIUM overrides.
CHROMIUM = Path(os.environ.get("APPSNEO_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# User settings: no "official Jupyter news?" prompt or update check, and no "Select Kernel" dialog
# (the notebook's own kernel starts at once).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"autoStartDefaultKernel": True},
}


def missing_browser_stack() -> str | None:
    """Why the browser test cannot run here (None when it can)."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    try:
        import jupyterlab  # noqa: F401
        import ipywidgets  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, method: str = "GET", timeout: float = 5.0):
    request = urllib.request.Request(url, method=method, data=b"" if method != "GET" else None)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else None


class LabServer:
    """A running JupyterLab: `.url(path)` builds a URL with the token."""

    def __init__(self, port: int, token: str, process: subprocess.Popen, log: Path):
        self.port, self.token, self.process, self.log = port, token, process, log

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path.lstrip('/')}{sep}token={self.token}"

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@contextmanager
def jupyter_lab(root: Path, *, env: dict | None = None, start_timeout: float = 120.0):
    """Start JupyterLab serving `root`; on exit shut its kernels and the server down."""
    root = Path(root)
    home = root.parent / (root.name + "-jupyter")
    dirs = {name: home / name for name in ("config", "data", "runtime", "settings", "workspaces")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    for name, value in LAB_SETTINGS.items():
        target = dirs["settings"] / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(value))
    port, token = free_port(), secrets.token_hex(16)
    environment = {**os.environ, **(env or {}),
                   "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
                   "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
                   "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"])}
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--ServerApp.terminals_enabled=False", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        f"--LabApp.workspaces_dir={dirs['workspaces']}", f"--LabApp.user_settings_dir={dirs['settings']}",
        "--LabApp.extension_manager=readonly",  # no PyPI queries from the extension manager
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI containers run as root
    log = home / "server.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, cwd=root, env=environment, stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = LabServer(port, token, process, log)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{server.log_tail()}")
            try:
                _request(server.url("api/status"), timeout=2.0)
                break
            except (urllib.error.URLError, OSError, ValueError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer in {start_timeout:.0f} s:\n{server.log_tail()}")
                time.sleep(0.5)
        yield server
    finally:
        stop_server(server)
        shutil.rmtree(dirs["runtime"], ignore_errors=True)


def stop_server(server: LabServer, timeout: float = 30.0) -> None:
    """Delete every kernel, ask the server to shut down, then make sure its process group is gone."""
    process = server.process
    if process.poll() is None:
        try:
            for kernel in _request(server.url("api/kernels")) or []:
                _request(server.url(f"api/kernels/{kernel['id']}"), method="DELETE", timeout=15.0)
        except (urllib.error.URLError, OSError, ValueError):
            pass
        try:
            _request(server.url("api/shutdown"), method="POST")
        except (urllib.error.URLError, OSError, ValueError):
            pass
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)  # only the group this helper started (start_new_session)
        except (ProcessLookupError, PermissionError):
            break
        try:
            process.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def chromium_page(user_data_dir: Path, *, viewport=(1400, 1400)):
    """A Playwright page in Debian's Chromium with a fresh profile; closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data_dir), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            yield page
        finally:
            context.close()
