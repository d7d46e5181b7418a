"""course_utils.yours: later chapters run on the student's own earlier pieces where they pass.

A temporary workspace holds every chapter with the solutions filled in, except a few pieces
written differently but correctly (they must be the ones used), one wrong (falls back with the
check's message), one blank (falls back: not written yet) and one that loops (falls back after
the time limit). Chapters 7 and 9 then run end to end in quick mode inside it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

import course_utils.yours as yours
from course_utils import reference
from course_utils.course.chapters import RELEASE_DIR, release_notebook
from course_utils.yours import whose, whose_model, your_pieces
from tests.workspaces import EINSUM_ATTENTION, STUDENT, make_workspace

CH09_NEEDS = ("Transformer", "create_padding_mask", "create_causal_mask", "NoamScheduler", "LabelSmoothingLoss")


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Own cache folder, short time limits, no state shared between tests' kernels."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    # Short enough for the looping piece, long enough for an honest check on a busy machine.
    monkeypatch.setenv("COURSE_YOURS_CHECK_SECONDS", "12")
    monkeypatch.setenv("COURSE_YOURS_CELL_SECONDS", "12")
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setattr(yours, "_KNOWN", {})
    monkeypatch.setattr(yours, "_MODULES", {})


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("student") / "work", STUDENT)


def use(workspace: Path, monkeypatch, chapter: str) -> None:
    """Run as the chapter's notebook does: from its folder, in the workspace."""
    monkeypatch.setenv(yours.WORKSPACE_ENV, str(workspace))
    monkeypatch.chdir(workspace / chapter if (workspace / chapter).is_dir() else workspace)


def rows(pieces) -> dict[str, tuple[str, str]]:
    return {row.name: (row.whose, row.reason) for row in pieces.rows}


def test_chapter_9_gets_the_students_pieces_and_the_table_says_why(workspace, monkeypatch, capsys) -> None:
    use(workspace, monkeypatch, "09_multi30k")
    start = time.perf_counter()
    pieces = your_pieces(*CH09_NEEDS)
    cold = time.perf_counter() - start
    table = capsys.readouterr().out
    got = rows(pieces)
    assert all(row.whose == "yours" or row.name in ("FeedForwardNetwork", "PositionalEncoding", "DecoderLayer")
               for row in pieces.rows), table
    # Written differently from the reference, and correct: the student's own objects are used.
    assert got["scaled_dot_product_attention"] == ("yours", "")
    assert got["NoamScheduler"] == ("yours", "")
    # Wrong, blank, looping: the reference, each with its reason.
    assert got["FeedForwardNetwork"][0] == "reference"
    assert got["FeedForwardNetwork"][1].startswith("fails its check: ")
    assert got["PositionalEncoding"] == ("reference", "not written yet")
    assert got["DecoderLayer"][0] == "reference" and "did not finish within 12 s" in got["DecoderLayer"][1], table
    # Everything else is the student's, built on the pieces above.
    for name in ("MultiHeadAttention", "EncoderLayer", "Encoder", "Decoder", "Transformer",
                 "create_masks", "LabelSmoothingLoss"):
        assert got[name] == ("yours", ""), name
    transformer, *_ = pieces
    assert whose(transformer) == "yours (07_masking)" and transformer is not reference.Transformer
    assert whose(pieces[3]) == "yours (08_scheduler)"
    assert "14 of 17 yours" in table, table
    assert "PositionalEncoding" in table and "not written yet" in table
    # The model is built from the student's classes down to the attention function.
    model = transformer(11, 13, d_model=16, num_layers=1, num_heads=2, d_ff=32)
    parts = whose_model(model)
    assert "Transformer                    yours (07_masking)" in parts
    assert "MultiHeadAttention             yours (02_multi_head_attention)" in parts
    assert "scaled_dot_product_attention   yours (01_attention)" in parts
    assert "DecoderLayer                   reference" in parts
    mha = sys.modules["work_02_multi_head_attention"]
    assert mha.scaled_dot_product_attention.__doc__ == "einsum version (a student's own)."
    print(f"cold your_pieces for chapter 9: {cold:.1f} s")
    # Cached by content: again in this kernel, instant; in a new kernel, no checks run.
    start = time.perf_counter()
    assert your_pieces(*CH09_NEEDS, show=False)[0] is transformer
    assert time.perf_counter() - start < 0.5
    monkeypatch.setattr(yours, "_KNOWN", {})
    monkeypatch.setattr(yours, "_MODULES", {})
    monkeypatch.setattr(yours, "_run_worker", lambda *a: pytest.fail("the disk cache was not used"))
    again = your_pieces(*CH09_NEEDS, show=False)
    assert rows(again) == got and again[0] is not transformer


def test_forcing_the_reference_for_one_piece_rebuilds_the_later_ones_on_it(workspace, monkeypatch) -> None:
    use(workspace, monkeypatch, "07_masking")
    encoder, decoder = your_pieces("Encoder", "Decoder", reference=["MultiHeadAttention"], show=False)
    assert whose(encoder) == "yours (05_encoder)"
    got = rows(your_pieces("Encoder", reference=["MultiHeadAttention"], show=False))
    assert got["MultiHeadAttention"] == ("reference", "you asked for the reference")
    layer = encoder(vocab_size=7, d_model=8, num_layers=1, num_heads=2, d_ff=16).layers[0]
    assert whose(layer.self_attn) == "reference"
    everything = your_pieces("Encoder", reference=True, show=False)
    assert all(row.whose == "reference" for row in everything.rows)


def test_a_piece_of_this_or_a_later_chapter_is_the_reference(workspace, monkeypatch) -> None:
    use(workspace, monkeypatch, "05_encoder")
    got = rows(your_pieces("MultiHeadAttention", "Encoder", show=False))
    assert got["MultiHeadAttention"][0] == "yours"
    assert got["Encoder"] == ("reference", "this chapter's or a later one's exercise")


@pytest.mark.parametrize("env, cwd, expected", [
    ({"NBGRADER_EXECUTION": "autograde"}, "work", "graded by nbgrader"),
    ({}, "solutions", "not in the course's work/ folder"),
])
def test_grading_and_nbval_use_the_reference(workspace, monkeypatch, tmp_path, env, cwd, expected) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if cwd == "work":
        use(workspace, monkeypatch, "05_encoder")
    else:  # nbval runs solutions/<id>/<id>.ipynb from its folder, with no COURSE_WORKSPACE
        monkeypatch.delenv(yours.WORKSPACE_ENV, raising=False)
        monkeypatch.chdir(Path(reference.__file__).parents[2] / "solutions" / "05_encoder")
    monkeypatch.setattr(yours, "_run_worker", lambda *a: pytest.fail("no checks may run here"))
    pieces = your_pieces("MultiHeadAttention", "FeedForwardNetwork", show=False)
    assert list(pieces) == [reference.MultiHeadAttention, reference.FeedForwardNetwork]
    assert all(row.whose == "reference" and expected in row.reason for row in pieces.rows)


def _one_chapter(tmp_path: Path, overrides=None) -> Path:
    return make_workspace(tmp_path / "work", overrides or {("01_attention", "sdpa_solution"): EINSUM_ATTENTION},
                          only=["01_attention"])


def test_bad_notebooks_give_a_reason_never_a_traceback(tmp_path, monkeypatch) -> None:
    work = _one_chapter(tmp_path)
    notebook = work / "01_attention" / "01_attention.ipynb"
    use(work, monkeypatch, "02_multi_head_attention")

    def reason() -> str:
        yours._KNOWN.clear()
        yours._MODULES.clear()
        return rows(your_pieces("scaled_dot_product_attention", show=False))["scaled_dot_product_attention"][1]

    good = notebook.read_text(encoding="utf-8")
    # duplicated: the one named like the chapter is used, and the table says so
    (notebook.parent / "01_attention-old.ipynb").write_text(good, encoding="utf-8")
    pieces = your_pieces("scaled_dot_product_attention", show=False)
    assert pieces.rows[0].whose == "yours"
    assert any("also found 01_attention-old.ipynb; using 01_attention.ipynb" in note for note in pieces.notes)
    # renamed
    notebook.unlink()
    assert reason() == ("notebook not found: work/01_attention/01_attention.ipynb (there is "
                        "01_attention-old.ipynb; only the file named like the chapter is read: rename your copy back)")
    (notebook.parent / "01_attention-old.ipynb").unlink()
    assert reason() == "notebook not found: work/01_attention/01_attention.ipynb"
    # corrupt JSON
    notebook.write_text(good[: len(good) // 2], encoding="utf-8")
    assert reason().startswith("work/01_attention/01_attention.ipynb is not valid JSON (line ")
    # from an older release: the exercise cells have other ids
    notebook.write_text(good.replace('"sdpa_solution"', '"attention_solution"')
                        .replace('"scores_solution"', '"scores_old"'), encoding="utf-8")
    assert "from another release of the course" in reason()
    notebook.write_text(good.replace('"sdpa_solution"', '"attention_solution"'), encoding="utf-8")
    assert reason() == ("work/01_attention/01_attention.ipynb has no cell sdpa_solution: it is from an older "
                        "release of the course (copy your code into the current one)")
    # a syntax error
    notebook.write_text(good.replace("def scaled_dot_product_attention(query,", "def scaled_dot_product_attention(query,,"),
                        encoding="utf-8")
    assert reason() == "your cell sdpa_solution has a SyntaxError at line 1: invalid syntax"


def test_a_cell_that_hangs_beyond_pythons_reach_is_stopped(tmp_path, monkeypatch) -> None:
    """A loop the alarm cannot interrupt (the student's code ignores SIGALRM, as a loop in
    compiled code would): the kernel stops the worker, marks that step and goes on."""
    hanging = EINSUM_ATTENTION + "\nimport signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n"
    work = _one_chapter(tmp_path, {("01_attention", "sdpa_solution"): hanging})
    use(work, monkeypatch, "02_multi_head_attention")
    monkeypatch.setattr(yours, "STALL_SECONDS", 6.0)
    start = time.perf_counter()
    got = rows(your_pieces("scaled_dot_product_attention", "attention_scores", show=False))
    assert time.perf_counter() - start < 40
    assert got["scaled_dot_product_attention"][0] == "reference"
    assert "did not finish when run" in got["scaled_dot_product_attention"][1]
    assert got["attention_scores"] == ("yours", "")   # its own cell ran; only the hanging one is skipped


def test_the_students_files_are_only_read(workspace, monkeypatch) -> None:
    before = {p: p.stat().st_mtime_ns for p in workspace.rglob("*")}
    use(workspace, monkeypatch, "08_scheduler")
    your_pieces("Encoder", show=False)
    assert {p: p.stat().st_mtime_ns for p in workspace.rglob("*")} == before


def test_a_checkpoint_loads_into_the_students_transformer(workspace, monkeypatch, tmp_path) -> None:
    from course_utils.training import translator
    from course_utils.data import Vocab

    use(workspace, monkeypatch, "09_multi30k")
    pieces = your_pieces("Transformer", show=False)
    [Transformer] = pieces
    assert whose(Transformer) == "yours (07_masking)", pieces.table()
    preset = translator.PRESETS["smoke"]
    vocab = Vocab.build([["a", "b", "c"]] * 3, min_freq=1)
    kwargs = {"src_vocab_size": len(vocab), "tgt_vocab_size": len(vocab), **preset.model_kwargs(),
              "max_seq_length": 256, "pad_idx": 0}
    saved = reference.Transformer(**kwargs)
    torch.save({"config": dataclasses.asdict(preset), "model_kwargs": kwargs, "model_state": saved.state_dict(),
                "src_vocab": vocab.to_dict(), "tgt_vocab": vocab.to_dict(), "metrics": {}}, tmp_path / "model.pt")
    loaded = translator.load_checkpoint(tmp_path, model_class=Transformer, device="cpu")
    assert whose(loaded.model) == "yours (07_masking)"
    src, tgt = torch.tensor([[4, 5, 6]]), torch.tensor([[2, 4, 5]])
    saved.eval()
    with torch.no_grad():
        assert torch.allclose(loaded.model(src, tgt), saved(src, tgt), atol=1e-5)


def _run_notebook(chapter: str, workspace: Path) -> list[str]:
    """Execute the student's notebook in quick mode from its folder; the text of every output."""
    path = workspace / chapter / f"{chapter}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    env = dict(os.environ, COURSE_QUICK="1", MPLBACKEND="Agg")
    env[yours.WORKSPACE_ENV] = str(workspace)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=env)
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") or json.dumps(output.get("data", {}).get("text/plain", "")))
    return texts


@pytest.mark.parametrize("chapter", ["07_masking", "09_multi30k"])
def test_chapters_run_end_to_end_on_the_students_pieces(workspace, chapter) -> None:
    outputs = "\n".join(_run_notebook(chapter, workspace))
    assert "Pieces from earlier chapters:" in outputs
    assert "MultiHeadAttention            ✓ yours" in outputs or "MultiHeadAttention  ✓ yours" in outputs \
        or "✓ yours      02_multi_head_attention" in outputs
    assert "Whose parts are trained here:" in outputs
    if chapter == "07_masking":
        assert "Transformer                    yours (this notebook)" in outputs
        assert "Encoder                        yours (05_encoder)" in outputs
    else:
        assert "Transformer                    yours (07_masking)" in outputs
        assert "NoamScheduler                  yours (08_scheduler)" in outputs
        assert "train_epoch                    yours (this notebook)" in outputs


def test_every_needed_piece_exists_in_the_reference() -> None:
    """The setup cells ask only for pieces that some chapter checks and the reference has."""
    from course_utils.yours.catalogue import catalogue, chapter_of

    for chapter in catalogue(RELEASE_DIR).values():
        assert release_notebook(chapter.id).is_file()
        for name in chapter.needs:
            assert chapter_of(name) is not None and name in reference.__all__, (chapter.id, name)


def test_this_notebook_keeps_a_passing_exercise_and_replaces_a_failing_one(capsys) -> None:
    """Chapter 12 trains on the tokenizer the student just wrote, or on the reference's with the reason."""
    def wrong_count_pairs(words):  # counts across word boundaries
        sequence = [symbol for word in words for symbol in word]
        return dict.fromkeys(zip(sequence, sequence[1:]), 1)

    def right_count_pairs(words):
        counts: dict = {}
        for word, n in words.items():
            for i in range(len(word) - 1):
                counts[word[i], word[i + 1]] = counts.get((word[i], word[i + 1]), 0) + n
        return counts

    mine, = yours.this_notebook({"count_pairs": right_count_pairs})
    assert mine is right_count_pairs
    fallback = yours.this_notebook({"count_pairs": wrong_count_pairs})
    assert fallback[0] is reference.count_pairs
    [(whose_it_is, reason)] = rows(fallback).values()
    assert whose_it_is == "reference" and reason.startswith("fails its check") and "across word boundaries" in reason
    table = capsys.readouterr().out
    assert "Your exercises of this chapter: 1 of 1 yours" in table and "count_pairs  ✓ yours" in table
    assert "Your exercises of this chapter: 0 of 1 yours" in table
    with pytest.raises(ValueError, match="no chapter's exercise is called"):
        yours.this_notebook({"not_an_exercise": len})
