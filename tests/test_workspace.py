"""`make lab`'s workspace: new chapters are copied into work/, a student's file never overwritten;
and JupyterLab starts on that folder and serves its notebooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from course_utils.course.chapters import RELEASE_DIR
from course_utils.course.workspace import sync_workspace
from tests.support import CHAPTERS
from tests.support import free_port


def test_sync_copies_every_chapter_then_never_overwrites(tmp_path: Path) -> None:
    work = tmp_path / "work"
    copied, kept = sync_workspace(RELEASE_DIR, work)
    assert {p.parts[0] for p in copied} == set(CHAPTERS) and not kept
    answer = work / CHAPTERS[0] / f"{CHAPTERS[0]}.ipynb"
    answer.write_text("my answers", encoding="utf-8")
    before = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
    copied_again, kept_again = sync_workspace(RELEASE_DIR, work)
    assert not copied_again and len(kept_again) == len(copied)
    assert answer.read_text(encoding="utf-8") == "my answers"
    assert before == {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}


def test_sync_adds_a_new_chapter_and_keeps_the_rest(tmp_path: Path) -> None:
    release, work = tmp_path / "notebooks", tmp_path / "work"
    (release / "01_a").mkdir(parents=True)
    (release / "01_a" / "01_a.ipynb").write_text("v1", encoding="utf-8")
    sync_workspace(release, work)
    (work / "01_a" / "01_a.ipynb").write_text("student work", encoding="utf-8")
    (release / "01_a" / "01_a.ipynb").write_text("v2 of the course", encoding="utf-8")
    (release / "02_b").mkdir()
    (release / "02_b" / "02_b.ipynb").write_text("new chapter", encoding="utf-8")
    copied, kept = sync_workspace(release, work)
    assert copied == [Path("02_b/02_b.ipynb")] and kept == [Path("01_a/01_a.ipynb")]
    assert (work / "01_a" / "01_a.ipynb").read_text(encoding="utf-8") == "student work"



def test_jupyterlab_serves_the_workspace(tmp_path: Path) -> None:
    """The server `make lab` starts (same command, on loopback, without a browser) lists work/."""
    work = tmp_path / "work"
    sync_workspace(RELEASE_DIR, work)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={work}", "--no-browser",
         f"--port={port}", "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=",
         "--ServerApp.password=", *(["--allow-root"] if os.geteuid() == 0 else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents", timeout=2) as r:
                    listing = json.load(r)
                break
            except OSError:
                assert server.poll() is None, "jupyter lab exited early"
                assert time.monotonic() < deadline, "jupyter lab did not answer within 60 s"
                time.sleep(0.5)
        assert {item["name"] for item in listing["content"]} == set(CHAPTERS)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=5) as r:
            assert r.status == 200 and b"JupyterLab" in r.read()
    finally:
        server.terminate()
        server.wait(timeout=30)
