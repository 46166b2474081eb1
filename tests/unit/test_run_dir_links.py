"""Nothing in a run directory is followed out of it: a planted symbolic link is refused with
one error line, and nothing outside is written (issue: a `.lock` link truncated its target;
`report/` or `_stale/` linked outside received files)."""

import os

import pytest

from ouroboros.cli import main

SMALL = ["data.train_size=40", "data.valid_size=10", "data.test_size=20", "seeds=[0]",
         "generations=1", "policies=[{name: replace}]", "runtime.progress=false",
         "model.n_embd=16", "training.epochs=1", "generation.max_new_tokens=8"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("links") / "run"
    assert main(["run", "--no-report", "--out", str(run), *SMALL]) == 0
    return run


def _outside(tmp_path):
    target = tmp_path / "outside"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    return target


@pytest.mark.parametrize("plant", [".lock", "report", "_stale", "stage"])
def test_a_planted_link_is_refused_and_nothing_outside_changes(finished, tmp_path, capsys,
                                                              plant):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(finished, run, symlinks=True)
    outside = _outside(tmp_path)
    if plant == ".lock":
        (run / ".lock").unlink()
        os.symlink(outside / "precious.txt", run / ".lock")
    elif plant == "stage":
        stage = next((run / "stages" / "evaluate").iterdir())
        shutil.rmtree(stage)
        os.symlink(outside, stage)
    else:
        os.symlink(outside, run / plant)
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    for argv in (["resume", str(run)], ["report", str(run)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and "symbolic link inside the run directory" in err
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before


def test_compare_out_an_existing_folder_is_one_error(finished, tmp_path, capsys):
    assert main(["compare", str(finished), str(finished), "--out", str(tmp_path)]) == 2
    assert "give the path of the page to write" in capsys.readouterr().err
