"""The shared atomic-write and timing helpers."""

import pytest

from kerazoo.utils import files, timing


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "report.json"
    files.atomic_write_text(path, "first")
    files.atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.json"]


def test_atomic_path_failure_keeps_old_content(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with files.atomic_path(path) as tmp:
            assert tmp.suffix == ".keras" and tmp.parent == tmp_path
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_atomic_directory_replaces_or_refuses(tmp_path):
    target = tmp_path / "preset"
    with files.atomic_directory(target) as staging:
        (staging / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    with pytest.raises(FileExistsError, match="overwrite"):
        with files.atomic_directory(target):
            pass
    with pytest.raises(ValueError):
        with files.atomic_directory(target, overwrite=True) as staging:
            (staging / "b.txt").write_text("2")
            raise ValueError("failed half-way")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    with files.atomic_directory(target, overwrite=True) as staging:
        (staging / "b.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preset"]


def test_median_ms_warms_up_then_takes_the_median(monkeypatch):
    # A fake clock: each call advances it by its listed duration, so the result is exact on a busy machine.
    clock = [0.0]
    calls = []
    durations = iter([0.5, 0.003, 0.001, 0.002])  # the first (warm-up) call is not timed

    def run():
        calls.append(1)
        clock[0] += next(durations)

    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    ms = timing.median_ms(run, runs=3)
    assert len(calls) == 4
    assert abs(ms - 2.0) < 1e-9
    assert timing.median_ms(run, runs=0) is None


def test_atomic_results_get_ordinary_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        files.atomic_write_text(tmp_path / "a.txt", "x")
        with files.atomic_directory(tmp_path / "d"):
            pass
    finally:
        os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0o600
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
