"""Jupyter servers for the browser tests: the student's (``make lab``'s own command) and the
instructor's (``jupyter lab`` in a course directory), each on loopback with a token of its own.

The student's command is read from the Makefile (``make -n lab``), so the test runs what
``make lab`` runs, with the workspace swapped for a temporary one and the port, address and
token set for the test.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course_utils.course.chapters import ROOT
from tests.support import free_port

#: Seconds a server may take to answer its first request (2 busy cores: usually 5 to 10).
START_SECONDS = 90



@dataclass
class Server:
    """A running Jupyter server: where it answers, with which token, and its log."""

    base: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str) -> str:
        """``path`` on this server with the token that logs the browser in."""
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(f"{self.base}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def make_lab_command() -> tuple[dict[str, str], list[str]]:
    """The environment assignments and the argv of the line that ``make lab`` runs JupyterLab with."""
    dry = subprocess.run(["make", "-n", "-s", "lab"], cwd=ROOT, capture_output=True, text=True, check=True)
    [line] = [l for l in dry.stdout.splitlines() if re.search(r"\bjupyter lab\b", l)]
    words = shlex.split(line)
    env = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return env, words


def start_server(argv: list[str], *, cwd: Path, env: dict[str, str], scratch: Path,
                 unset: tuple[str, ...] = ()) -> Server:
    """Start ``argv`` (a ``jupyter lab`` command) on a free loopback port and wait for it to answer.

    ``scratch`` receives the log and Jupyter's runtime, config and settings folders, so nothing of
    the user's own Jupyter setup (``~/.jupyter``) changes what the test sees, and nothing of the
    test's is left behind. ``env`` is added to this process's environment, less the names in ``unset``.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(16)
    argv = [*argv, "--no-browser", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}"]
    if os.geteuid() == 0 and "--allow-root" not in argv:
        argv.append("--allow-root")
    env = {**os.environ, **env,
           "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"), "JUPYTER_CONFIG_DIR": str(scratch / "config"),
           "JUPYTERLAB_SETTINGS_DIR": str(scratch / "user-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(scratch / "lab-workspaces")}
    for name in unset:
        env.pop(name, None)
    log = scratch / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    server = Server(f"http://127.0.0.1:{port}", token, process, log)
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            server.api("/api/status")
            return server
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"{' '.join(argv[:2])} did not start:\n{server.log_text()}") from None
            time.sleep(0.3)
