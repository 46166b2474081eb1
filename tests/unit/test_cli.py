"""The command line: exit codes, messages, and that bad input writes nothing."""

from ouroboros.cli import main


def test_ls_lists_plugins(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "data policy: accumulate, accumulate-subsample, fresh, mix, replace" in out


def test_validate_ok_and_bad(tmp_path, capsys):
    assert main(["validate"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("policies: [{name: replce}]\ntraining: {epochs: -1, lrr: 1}\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "policies.0.name" in err and "did you mean 'replace'" in err
    assert "training.epochs" in err and "training.lrr: unknown key" in err


def test_bad_run_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "seeds=oops"]) == 2
    assert not out.exists()
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: no such file" in capsys.readouterr().err


def test_status_of_non_run_dir(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert "config.yaml not found" in capsys.readouterr().err


def test_config_prints_documented_yaml_that_loads_back(tmp_path, capsys):
    from ouroboros.config import load_config
    assert main(["config", "policies.0.name=fresh", "policies.0.real_fraction=0.5"]) == 0
    out = capsys.readouterr().out
    assert "# Real training examples (generation 0); from files" in out
    assert "\n  train_size: 3000\n" in out  # its long comment on the lines above
    assert max(len(line) for line in out.splitlines()) <= 80
    path = tmp_path / "c.yaml"
    path.write_text(out)
    assert load_config(path).policies[0].display == "fresh-0.5"


def test_overrides_before_and_after_options(tmp_path, capsys):
    assert main(["validate", "seeds=[4]", "generations=2"]) == 0
    assert main(["run", "--out", str(tmp_path / "x"), "seeds=oops"]) == 2
    assert main(["run", "seeds=oops", "--out", str(tmp_path / "x")]) == 2
    assert "seeds" in capsys.readouterr().err


def test_validate_runs_the_plan_checks_of_run(capsys):
    """A config that validates field by field but whose plan fails (mix takes more samples
    than a generation yields) is refused by validate too."""
    args = ["validate", "data.train_size=40", "data.valid_size=5", "data.test_size=10",
            "generation.num_samples=10", "policies=[{name: mix, real_fraction: 0.1}]"]
    assert main(args) == 2
    assert "policies.0: mix-0.1 takes 36 synthetic examples" in capsys.readouterr().err


def test_devices_checked_before_work(tmp_path, capsys):
    """A device this machine lacks, or a misspelt one, is refused before anything is written;
    auto picks cuda only where PyTorch sees a GPU."""
    import torch

    from ouroboros.experiment.loop import resolve_device
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "runtime.device=gpu"]) == 2
    assert "runtime.device: String should match pattern" in capsys.readouterr().err
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        assert main(["run", "--out", str(out), "runtime.device=cuda:0"]) == 2
        assert "runtime.device: cuda:0 asked for, but PyTorch" in capsys.readouterr().err
    assert not out.exists()


def test_out_that_cannot_be_a_run_directory(tmp_path, capsys):
    """--out that is a file, under a file, or unwritable: one error line, exit 2, before any
    work, and the file is left as it was."""
    import os

    import pytest
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    assert main(["run", "--out", str(a_file)]) == 2
    assert f"--out {a_file}: is a file, not a run directory" in capsys.readouterr().err
    assert main(["run", "--out", str(a_file / "run")]) == 2
    assert "is a file, so no directory can be made under it" in capsys.readouterr().err
    assert a_file.read_text() == "keep me"
    if os.geteuid() == 0:
        pytest.skip("root can write a read-only directory")
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o555)
    assert main(["run", "--out", str(locked / "run")]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_unwritable_or_full_disk_mid_run_is_one_error(tmp_path, capsys, monkeypatch):
    """A location that refuses writes once the run starts (read-only file system), and a full
    disk: exit 2 with one `error:` line naming the path and how to continue, no traceback."""
    import errno

    from ouroboros.experiment import rundir

    def refuse(path, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(path))
    monkeypatch.setattr(rundir.Path, "mkdir", refuse)
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "generations=1", "seeds=[0]"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {out}: Read-only file system")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    monkeypatch.undo()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(rundir, "write_config", full)
    assert main(["run", "--out", str(out), "generations=1", "seeds=[0]"]) == 2
    err = capsys.readouterr().err
    assert f"no space left on the device while writing {out}" in err
    assert f"`ouroboros resume {out}` continues" in err


def test_diverging_training_is_one_error(tmp_path, capsys, monkeypatch):
    """A training loss that stops being finite ends the run with one error line (exit 2)."""
    from ouroboros.training import trainer

    def diverge(*a, **k):
        raise trainer.TrainingDiverged("train s0-g0: the training loss is nan at step 3 of 9 "
                                       "(peak lr 1e+30); lower training.lr or check the data")
    monkeypatch.setattr("ouroboros.experiment.builders.train.train_model", diverge)
    out = tmp_path / "run"
    # local: the patch is in this process (executor auto would train in worker processes)
    assert main(["run", "--out", str(out), "generations=1", "seeds=[0]", "--no-report",
                 "runtime.executor=local"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: train s0-g0: the training loss is nan") and "Traceback" not in err


def test_status_is_complete_only_once_the_outputs_are_written(tmp_path, capsys, monkeypatch):
    """A run that fails while writing its report has every stage but is not complete; resume
    writes the rest. The lock is held while the report is written."""
    from ouroboros.experiment import rundir
    from ouroboros.report import html
    out = tmp_path / "run"
    args = ["generations=1", "seeds=[0]", "data.train_size=100", "data.test_size=50",
            "training.tokens=2000", "policies=[{name: replace}]", "runtime.progress=false"]
    real_render = html.render_report

    def locked_then_fail(run_dir):
        import pytest
        with pytest.raises(rundir.RunLockedError):  # still ours while the report is written
            with rundir.locked(run_dir):
                pass
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(html, "render_report", locked_then_fail)
    assert main(["run", "--out", str(out), *args]) == 2
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    assert "every stage is finished, but the CSVs and report were not" in capsys.readouterr().out
    monkeypatch.setattr(html, "render_report", real_render)
    assert main(["resume", str(out)]) == 0
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"{out}: complete")
    (tmp_path / "bare").mkdir()
    assert main(["resume", str(tmp_path / "bare")]) == 2
    assert "start it again with `ouroboros run CONFIG --out" in capsys.readouterr().err


def test_ctrl_c_names_the_run_directory_to_resume(tmp_path, capsys, monkeypatch):
    import ouroboros.experiment.loop as loop

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(loop, "run_study", interrupted)
    assert main(["run", "--out", str(tmp_path / "x")]) == 130
    err = capsys.readouterr().err
    assert f"`ouroboros resume {tmp_path / 'x'}` continues" in err and "RUN_DIR" not in err


def test_status_tells_a_live_run_from_a_dead_one(tmp_path, capsys):
    import multiprocessing

    from ouroboros.config import dump_config, load_config
    from ouroboros.experiment import rundir
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(load_config()))
    assert main(["status", str(run)]) == 0
    assert "no process is running it" in capsys.readouterr().out
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(run, ready, stop))
    holder.start()
    try:
        assert ready.wait(30)
        assert main(["status", str(run)]) == 0
        assert f"running now (ouroboros process {holder.pid} holds its lock)" in \
            capsys.readouterr().out
    finally:
        stop.set()
        holder.join()
    assert rundir.lock_holder(run) is None


def _hold_lock(run, ready, stop):
    from ouroboros.experiment import rundir
    with rundir.locked(run):
        ready.set()
        stop.wait(30)


def test_a_gpu_study_validates_on_a_machine_without_one_and_run_refuses(tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        import pytest
        pytest.skip("this machine has a GPU")
    small = ["data.train_size=40", "data.valid_size=10", "data.test_size=20", "seeds=[0]",
             "runtime.device=cuda"]
    assert main(["validate", *small]) == 0
    captured = capsys.readouterr()
    assert "valid" in captured.out and "note: this machine cannot run it" in captured.err
    assert main(["run", "--out", str(tmp_path / "x"), *small]) == 2
    assert "runtime.device: cuda asked for" in capsys.readouterr().err


def test_version(capsys):
    import pytest

    from ouroboros import __version__
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith(f"ouroboros {__version__}")


def test_help_fits_80_columns_and_every_command_says_what_it_does(capsys, monkeypatch):
    import pytest
    monkeypatch.setenv("COLUMNS", "80")
    commands = ["run", "resume", "status", "report", "compare", "validate", "config", "toys",
                "ls"]
    for args in ([], *([c] for c in commands)):
        with pytest.raises(SystemExit):
            main([*args, "--help"])
        out = capsys.readouterr().out
        assert max(len(line) for line in out.splitlines()) <= 80, args
        if args:  # a description under the usage line, not just the arguments
            assert out.split("\n\n")[1][0].isupper(), args
