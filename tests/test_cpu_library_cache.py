"""The cache of the compiled CPU library: whom it trusts, and what it does with a damaged file.

The build itself is replaced by the bytes of the library this session already built (no compiler
runs here, except in the one end-to-end check in a fresh process).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from losses.torch._kernels import _clib  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ANOTHER_USER = 4243


@pytest.fixture(scope="module")
def built():
    """(compiler, bytes of a complete library without its trailer)."""
    library = _clib.library()
    if library is None:
        pytest.skip(f"no CPU library here: {_clib.build_error()}")
    path = Path(library._name)
    data = path.read_bytes()[: -_clib._TRAILER] if path.exists() else None
    compiler = _clib._compiler()
    if data is None:  # this session's library came from a private directory, gone since
        data = _clib._compile(compiler, _clib._flag_sets()[0], _clib._sources())
    return compiler, data


@pytest.fixture
def cache(tmp_path, monkeypatch, built):
    """An empty cache directory, and the compiler replaced by the session's library."""
    compiler, data = built
    directory = tmp_path / "cache"
    monkeypatch.setenv("LOSSES_CACHE_DIR", str(directory))
    compiled = []

    def compile_(*args):
        compiled.append(args)
        return data

    monkeypatch.setattr(_clib, "_compile", compile_)
    return directory, compiled


def expected_name(compiler):
    return _clib._file_name(compiler, _clib._flag_sets()[0], _clib._sources())


def load(compiler):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        library = _clib._build_and_load(compiler)
    assert library.run_pass is not None  # a working library, whatever else happened
    return library, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def pretend_owner(monkeypatch, path: Path, function: str, uid: int = ANOTHER_USER):
    """``os.stat`` or ``os.lstat`` report the file now at ``path`` (this inode) as owned by ``uid``."""
    real = getattr(os, function)
    inode = real(path).st_ino

    def fake(target, *args, **kwargs):
        info = real(target, *args, **kwargs)
        if info.st_ino != inode:
            return info
        fields = list(info)
        fields[4] = uid
        return os.stat_result(fields)

    monkeypatch.setattr(os, function, fake)


def test_a_new_cache_is_private_to_write_and_readable_by_all(cache, built):
    directory, compiled = cache
    library, warned = load(built[0])
    path = directory / expected_name(built[0])
    assert Path(library._name) == path and not warned and len(compiled) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # every user of a shared cache can read it
    assert stat.S_IMODE(directory.stat().st_mode) & 0o022 == 0
    assert sorted(p.name for p in directory.iterdir()) == [path.name]  # no partial file left behind
    assert _clib._valid_library(path)
    # a second process finds it and compiles nothing
    library, warned = load(built[0])
    assert Path(library._name) == path and not warned and len(compiled) == 1


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "no trailer", "empty"])
def test_a_damaged_cached_library_is_rebuilt_not_loaded(cache, built, damage):
    directory, compiled = cache
    load(built[0])
    path = directory / expected_name(built[0])
    data = path.read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "flipped byte": data[:100] + bytes([data[100] ^ 1]) + data[101:],
        "no trailer": data[: -_clib._TRAILER],
        "empty": b"",
    }[damage]
    path.unlink()  # a new file: this process has the old one mapped, and truncating that would kill it
    path.write_bytes(damaged)
    assert not _clib._valid_library(path)
    library, warned = load(built[0])
    assert Path(library._name) == path and not warned
    assert len(compiled) == 2 and path.read_bytes() == data


def test_a_truncated_cached_library_does_not_crash_a_new_process(tmp_path, built):
    """End to end, in a fresh interpreter: mapping a truncated library could end it with SIGBUS."""
    library = Path(_clib.library()._name)
    if not library.exists():
        pytest.skip("this session's library came from a private directory")
    directory = tmp_path / "cache"
    directory.mkdir()
    truncated = directory / library.name
    truncated.write_bytes(library.read_bytes()[:4096])
    code = (
        "import torch\nfrom losses.torch._kernels import _clib\nfrom losses.torch.functional import dice_loss\n"
        "x = torch.randn(2, 3, 64, 64, requires_grad=True)\n"
        "dice_loss(x, torch.randint(0, 3, (2, 64, 64))).backward()\n"
        "assert _clib.library() is not None, _clib.build_error()\n"
        "print(_clib.library()._name)\n"
    )
    env = {**os.environ, "LOSSES_CACHE_DIR": str(directory)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(truncated)
    assert _clib._valid_library(truncated)


@pytest.mark.parametrize("problem", ["another user's", "group-writable", "world-writable", "not a directory"])
def test_an_untrusted_cache_directory_is_never_read(cache, built, monkeypatch, problem):
    directory, compiled = cache
    directory.mkdir()
    planted = directory / expected_name(built[0])
    shutil.copyfile(_clib.library()._name, planted)  # a valid library: it must still not be loaded
    planted.chmod(0o644)
    if problem == "another user's":
        pretend_owner(monkeypatch, directory, "stat")
    elif problem == "not a directory":
        shutil.rmtree(directory)
        directory.write_bytes(b"")
    else:
        directory.chmod(0o775 if problem == "group-writable" else 0o777)
    library, warned = load(built[0])
    assert len(compiled) == 1
    assert not Path(library._name).is_relative_to(directory)
    assert not Path(library._name).parent.exists()  # the private directory is gone once loaded
    assert len(warned) == 1 and str(directory) in warned[0] and "for this process only" in warned[0]
    if problem != "not a directory":
        assert sorted(p.name for p in directory.iterdir()) == [planted.name]  # nothing written there


def test_the_fallback_directory_is_not_predictable(cache, built):
    directory, _ = cache
    directory.write_bytes(b"")  # unusable
    names = set()
    for _ in range(2):
        library, _ = load(built[0])
        names.add(Path(library._name).parent)
    assert len(names) == 2
    assert Path(tempfile.gettempdir(), f"losses-{os.getuid()}") not in names  # the former fallback


@pytest.mark.parametrize("problem", ["another user's", "group-writable", "a link"])
def test_an_untrusted_cached_file_is_replaced(cache, built, monkeypatch, problem):
    directory, compiled = cache
    load(built[0])
    path = directory / expected_name(built[0])
    assert _clib._valid_library(path)
    if problem == "another user's":
        pretend_owner(monkeypatch, path, "lstat")
    elif problem == "group-writable":
        path.chmod(0o664)
    else:
        target = directory / "elsewhere.so"
        path.rename(target)
        path.symlink_to(target)
    assert not _clib._valid_library(path)
    library, warned = load(built[0])
    assert Path(library._name) == path and not warned and len(compiled) == 2
    assert _clib._valid_library(path) and not path.is_symlink()


def test_a_read_only_trusted_cache_is_read_and_not_written(cache, built, monkeypatch):
    directory, compiled = cache
    load(built[0])
    path = directory / expected_name(built[0])
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == directory else real_access(p, mode))
    library, warned = load(built[0])  # an administrator's cache: used as it is
    assert Path(library._name) == path and not warned and len(compiled) == 1
    path.unlink()
    library, warned = load(built[0])  # nothing there for this machine: built privately, said once
    assert not Path(library._name).is_relative_to(directory) and len(compiled) == 2
    assert len(warned) == 1 and "read-only" in warned[0]
    assert list(directory.iterdir()) == []


def test_root_is_trusted_and_other_owners_are_not(tmp_path):
    info = os.stat(tmp_path)
    for uid, trusted in ((os.geteuid(), True), (0, True), (ANOTHER_USER, False)):
        fields = list(info)
        fields[0], fields[4] = stat.S_IFDIR | 0o755, uid
        assert (_clib._untrusted(tmp_path, os.stat_result(fields), "the cache directory") is None) == trusted
