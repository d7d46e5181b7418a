"""What a person sees: every chapter's release notebook, rendered in the student's JupyterLab,
without a broken image, a LaTeX formula MathJax could not typeset or left as raw text, or a dead
link. Links inside the workspace must be served by the lab (a link that leaves ``work/`` is dead
for a student); anchors must name a heading of the notebook; links to PyTorch's documentation
must be well-formed and name an object ``torch`` documents.

All the notebooks are opened in one tab, one after the other, through the file browser (and left
open: closing one JupyterLab has marked as changed would ask whether to save it); a
canary notebook with one of each fault goes first and must be caught, so the checks can fail.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from course_utils.course.chapters import chapters, release_notebook
from tests.browser.lab import new_tab, open_from_file_browser, open_lab
from tests.browser.servers import Server

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

CANARY = "zz_render_canary"
#: Faults the checks found that are reported and not yet fixed (the files are not this test's):
#: chapter -> (a piece of the problem's text, who fixes it). A listed fault that is gone fails the
#: test, so that the entry is removed.
KNOWN: dict[str, list[tuple[str, str]]] = {
    "03_feed_forward": [("PyTorch documents no torch.relu", "reported: a markdown cell of "
                         "solutions/03_feed_forward links generated/torch.relu.html, a page PyTorch's docs do not "
                         "have; torch.nn.functional.relu.html is the one")],
}
#: Seconds MathJax is given to typeset a notebook's formulas.
TYPESET_SECONDS = 20

#: In the page: what is wrong with the notebook in the main area, and its links (the authors' links:
#: JupyterLab's own heading permalinks, ``a.jp-InternalAnchorLink``, are left out; images are named
#: by file, since JupyterLab rewrites their URLs).
INSPECT = r"""
panel => {
  const problems = [];
  for (const img of panel.querySelectorAll('img')) {
    if (!img.complete || img.naturalWidth === 0) problems.push('broken image: ' + decodeURIComponent(new URL(img.src, location.href).pathname.split('/').pop()));
  }
  // MathJax 3 (CHTML) draws a formula it cannot parse as <mjx-merror data-mjx-error="why">.
  for (const err of panel.querySelectorAll('.jp-RenderedMarkdown mjx-merror')) {
    problems.push('LaTeX error: ' + (err.getAttribute('data-mjx-error') || err.textContent));
  }
  // A markdown cell's rendered text sits inside its .jp-InputArea: only code and typeset math are skipped.
  const skip = el => el.closest('code, pre, mjx-container, script, style');
  for (const md of panel.querySelectorAll('.jp-MarkdownCell .jp-RenderedMarkdown')) {
    const walker = document.createTreeWalker(md, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (skip(node.parentElement)) continue;
      for (const raw of node.textContent.matchAll(/\\[A-Za-z]{2,}|\$[^$\s][^$]*\$/g)) problems.push('raw LaTeX: ' + raw[0]);
    }
  }
  const links = [...panel.querySelectorAll('.jp-RenderedMarkdown a[href]:not(.jp-InternalAnchorLink)')].map(a => ({
    text: a.textContent, raw: a.getAttribute('href'), href: a.href}));
  const ids = [...panel.querySelectorAll('[id]')].map(e => e.id);
  // MathJax adds its stylesheet when it first typesets: before that, every formula is still text.
  return {problems, links, ids, math: panel.querySelectorAll('mjx-container').length,
          typeset: document.getElementById('MJX-CHTML-styles') !== null,
          markdown: panel.querySelectorAll('.jp-MarkdownCell').length,
          rendered: panel.querySelectorAll('.jp-MarkdownCell .jp-RenderedMarkdown').length};
}
"""


@dataclass
class Rendered:
    """What one notebook showed: its problems, and how many markdown cells were drawn."""

    problems: list[str] = field(default_factory=list)
    markdown: int = 0


def torch_documents(name: str) -> bool:
    """Whether ``torch`` has ``name`` (``torch.nn.functional.relu``) and documents it (a docstring),
    which is what PyTorch's documentation pages are generated from."""
    import importlib

    import torch

    parts = name.split(".")
    if parts[0] != "torch":
        return False
    obj: Any = torch
    for i, part in enumerate(parts[1:], start=1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        try:
            obj = importlib.import_module(".".join(parts[: i + 1]))
        except ImportError:
            return False
    return bool(getattr(obj, "__doc__", None))


def pytorch_link_problem(url: str) -> str | None:
    """Why a link to PyTorch's documentation is not well-formed, or None."""
    parts = urllib.parse.urlsplit(url)
    page = re.fullmatch(r"/docs/(?:stable|main|\d+\.\d+)/(?:generated/)?([A-Za-z0-9_.]+)\.html", parts.path)
    if parts.scheme != "https" or page is None:
        return f"not a page of PyTorch's documentation: {url}"
    name = parts.fragment or page.group(1)
    if name.startswith("torch.") and not torch_documents(name):
        return f"PyTorch documents no {name}: {url}"
    if not name.startswith("torch."):
        return f"names no torch object: {url}"
    return None


def link_problems(links: list[dict[str, str]], ids: list[str], server: Server, request: Any) -> list[str]:
    problems = []
    for link in links:
        href, raw = link["href"], link["raw"]
        parts = urllib.parse.urlsplit(href)
        if raw.startswith("#"):
            if raw[1:] not in ids and urllib.parse.unquote(raw[1:]) not in ids:
                problems.append(f"dead anchor: {raw}")
        elif href.startswith(server.base):
            response = request.get(href)
            if response.status != 200:
                problems.append(f"dead link: {raw} ({response.status} in the lab)")
        elif parts.netloc.endswith("pytorch.org"):
            why = pytorch_link_problem(href)
            if why:
                problems.append(why)
        elif parts.scheme not in ("https", "http") or not parts.netloc or " " in href:
            problems.append(f"malformed link: {raw}")
    return problems


def inspect(page: Any, server: Server, name: str, path: tuple[str, ...]) -> Rendered:
    """Open ``path`` from the file browser, let MathJax finish, and list what is wrong with it."""
    notebook = open_from_file_browser(page, *path, kernel=False)  # nothing is run
    deadline = time.monotonic() + TYPESET_SECONDS
    seen, before = None, None
    while True:  # until what is seen stays the same for a second: MathJax typesets as cells render
        time.sleep(0.5)
        seen = notebook.panel.evaluate(INSPECT)
        summary = (seen["problems"], seen["rendered"], seen["math"])
        settled = summary == before and seen["rendered"] == seen["markdown"] and seen["typeset"]
        if settled or time.monotonic() > deadline:
            break
        before = summary
    problems = seen["problems"] + link_problems(seen["links"], seen["ids"], server, page.request)
    if seen["rendered"] != seen["markdown"]:
        problems.append(f"{seen['markdown'] - seen['rendered']} markdown cells not rendered")
    return Rendered(problems, seen["markdown"])


#: One of each fault the checks look for.
CANARY_CELLS = [
    "# A canary\n\n![missing](no_such_picture.png)\n",
    "A formula that typesets, $x^2$, and one MathJax cannot parse: $x^^2$.\n",
    # Unbalanced braces: neither JupyterLab nor MathJax takes this for a formula, so it stays text.
    "A formula left as text: $\\frac{1}{$, and TeX outside a formula: \\alpha.\n",
    "[dead](../no_such_chapter/no_such_chapter.ipynb), [no anchor](#No-such-heading), "
    "[no page](https://pytorch.org/docs/stable/generated/torch.no_such_thing.html)\n",
]
# An undefined macro (\\notamacro) is no fault here: MathJax's noundefined package draws it in red.
CANARY_FINDS = ("broken image: no_such_picture.png", "LaTeX error: Missing open brace for superscript",
                "raw LaTeX: $\\frac{1}{$", "raw LaTeX: \\alpha", "dead link: ", "dead anchor: #No-such-heading",
                "PyTorch documents no torch.no_such_thing")


@pytest.fixture(scope="module")
def rendered(student_lab: Server, student_workspace: Path, browser: Any) -> dict[str, Rendered]:
    """Every chapter's notebook in the workspace, rendered in one tab; the canary first."""
    canary = student_workspace / CANARY / f"{CANARY}.ipynb"
    canary.parent.mkdir()
    kernel = json.loads(release_notebook(chapters()[0]).read_text(encoding="utf-8"))["metadata"]
    canary.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": kernel, "cells": [
        {"cell_type": "markdown", "id": "canary", "metadata": {}, "source": text} for text in CANARY_CELLS]}))
    page = new_tab(browser)
    results: dict[str, Rendered] = {}
    try:
        open_lab(page, student_lab)
        results[CANARY] = inspect(page, student_lab, CANARY, (CANARY, canary.name))
        shutil.rmtree(canary.parent)  # with the checkpoint JupyterLab made of it
        for chapter in chapters():
            if not (student_workspace / chapter).is_dir():
                continue  # not released yet
            results[chapter] = inspect(page, student_lab, chapter, (chapter, f"{chapter}.ipynb"))
    finally:
        page.context.close()
        for session in student_lab.api("/api/sessions"):  # the kernels the notebooks started
            if session["path"].split("/")[0] in results:
                student_lab.api(f"/api/sessions/{session['id']}", method="DELETE")
    return results


def test_the_checks_catch_each_fault(rendered: dict[str, Rendered]) -> None:
    problems = "\n".join(rendered[CANARY].problems)
    for expected in CANARY_FINDS:
        assert expected in problems, f"the canary's {expected!r} was not caught:\n{problems}"


@pytest.mark.parametrize("chapter", [c for c in chapters() if release_notebook(c).is_file()])
def test_release_notebook_renders_cleanly(rendered: dict[str, Rendered], chapter: str) -> None:
    result = rendered[chapter]
    assert result.markdown > 0
    known = KNOWN.get(chapter, [])
    unexpected = [p for p in result.problems if not any(piece in p for piece, _ in known)]
    assert not unexpected, f"{chapter} in JupyterLab:\n" + "\n".join(unexpected)
    fixed = [piece for piece, _ in known if not any(piece in p for p in result.problems)]
    assert not fixed, f"{chapter}: fixed, remove from KNOWN: {fixed}"
    if known:
        pytest.xfail(f"{chapter}: " + "; ".join(f"{piece} ({who})" for piece, who in known))
