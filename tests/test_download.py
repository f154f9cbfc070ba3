import io
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from unetbench.cli import main
from unetbench.datasets import ctc, synthetic
from unetbench.datasets.download import Resource, safe_extract, sha256_of, staged_directory
from unetbench.errors import DataError


def _fetch(name, url, root, *extra):
    return main(["data", "fetch", name, "--mirror", url, "--data-root", str(root), "--no-progress", *extra])


def _nothing_left(root: Path):
    assert not root.exists() or list(root.iterdir()) == [], list(root.rglob("*"))


@pytest.mark.slow
def test_fetch_isbi2012_from_a_loopback_mirror(tmp_path, serve, real_isbi, capsys):
    url = serve(real_isbi)
    root = tmp_path / "data"
    assert _fetch("isbi2012", url, root) == 0
    for name in ("train-volume.tif", "train-labels.tif", "test-volume.tif"):
        assert sha256_of(root / "isbi2012" / name) == sha256_of(real_isbi / name)
    assert sorted(p.name for p in root.iterdir()) == ["isbi2012"]  # no staging or partial files left
    assert "fetched and verified" in capsys.readouterr().out
    assert _fetch("isbi2012", url, root) == 1  # never silently overwritten
    assert "already exists; pass --force" in capsys.readouterr().err
    assert _fetch("isbi2012", url, root, "--force") == 0


def _fake_isbi(directory: Path, corrupt: str | None = None) -> Path:
    """The three file names with contents whose sha256 cannot match the official constants."""
    directory.mkdir()
    for name in ("train-volume.tif", "train-labels.tif", "test-volume.tif"):
        (directory / name).write_bytes(b"x" * 1000 if name == corrupt else b"y" * 10)
    return directory


def test_a_corrupted_file_leaves_nothing_behind(tmp_path, serve, capsys):
    url = serve(_fake_isbi(tmp_path / "server", corrupt="train-volume.tif"))
    root = tmp_path / "data"
    assert _fetch("isbi2012", url, root) == 1
    err = capsys.readouterr().err
    assert "train-volume.tif: sha256 mismatch" in err and "the file was deleted" in err
    assert "Traceback" not in err
    _nothing_left(root)


def test_a_truncated_download_leaves_nothing_behind(tmp_path, serve, capsys):
    url = serve(_fake_isbi(tmp_path / "server"), truncate=("train-volume.tif",))
    root = tmp_path / "data"
    assert _fetch("isbi2012", url, root) == 1
    err = capsys.readouterr().err
    assert "train-volume.tif" in err and ("closed after" in err or "download failed" in err)
    _nothing_left(root)


def test_a_missing_file_is_an_http_error(tmp_path, serve, capsys):
    (tmp_path / "empty").mkdir()
    root = tmp_path / "data"
    assert _fetch("isbi2012", serve(tmp_path / "empty"), root) == 1
    assert "HTTP 404" in capsys.readouterr().err
    _nothing_left(root)


def _zip_of_synthetic_cells(tmp_path: Path, top: str) -> bytes:
    synthetic.write_cells(tmp_path / "cells", seed=1, samples=4, height=64, width=64)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted((tmp_path / "cells").rglob("*")):
            if path.is_file():
                zf.write(path, f"{top}/{path.relative_to(tmp_path / 'cells')}")
    return buffer.getvalue()


def _serve_zip(tmp_path, serve, monkeypatch, payload: bytes) -> str:
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    (server_dir / "PhC-C2DH-U373.zip").write_bytes(payload)
    # The checksum constant is the official zip's; point it at this one so extraction itself is tested.
    official = ctc.RESOURCES["phc-u373"]
    monkeypatch.setitem(
        ctc.RESOURCES, "phc-u373", Resource(official.url, sha256_of(server_dir / "PhC-C2DH-U373.zip"))
    )
    return serve(server_dir)


def test_fetch_ctc_zip_extracts_into_the_data_root(tmp_path, serve, monkeypatch, capsys):
    url = _serve_zip(tmp_path, serve, monkeypatch, _zip_of_synthetic_cells(tmp_path, "PhC-C2DH-U373"))
    root = tmp_path / "data"
    assert _fetch("phc-u373", url, root) == 0
    assert sorted(p.name for p in (root / "phc-u373").iterdir()) == ["01", "01_GT", "02", "02_GT"]
    assert len(ctc.load(root / "phc-u373").labelled) == 4


def _evil_zip(name: str, *, symlink: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("PhC-C2DH-U373/01/t000.tif", b"fine")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, b"/etc/passwd" if symlink else b"evil")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("member", "symlink", "reason"),
    [
        ("../evil.txt", False, "a '..' component"),
        ("PhC-C2DH-U373/../../evil.txt", False, "a '..' component"),
        ("/tmp/evil.txt", False, "an absolute path"),
        ("C:/evil.txt", False, "an absolute path"),
        ("PhC-C2DH-U373/link", True, "a symbolic link"),
    ],
)
def test_unsafe_zip_members_are_refused_and_nothing_is_written(
    tmp_path, serve, monkeypatch, capsys, member, symlink, reason
):
    url = _serve_zip(tmp_path, serve, monkeypatch, _evil_zip(member, symlink=symlink))
    root = tmp_path / "data"
    assert _fetch("phc-u373", url, root) == 1
    err = capsys.readouterr().err
    assert f"refused to extract: member {member!r} has {reason}" in err
    _nothing_left(root)
    assert not (tmp_path / "evil.txt").exists()


def test_safe_extract_writes_nothing_when_one_member_is_bad(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_evil_zip("../evil.txt"))
    with pytest.raises(DataError, match="refused to extract"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    archive.write_bytes(b"PK not really")
    with pytest.raises(DataError, match="not a valid zip archive"):
        safe_extract(archive, tmp_path / "out")


def test_staged_directory_is_atomic_under_interruption(tmp_path):
    final = tmp_path / "data" / "set"
    with pytest.raises(KeyboardInterrupt), staged_directory(final) as stage:
        (stage / "half.tif").write_bytes(b"half")
        raise KeyboardInterrupt
    _nothing_left(tmp_path / "data")
    with staged_directory(final) as stage:
        (stage / "good.tif").write_bytes(b"good")
    # a failed --force replacement keeps the previous good copy
    with pytest.raises(RuntimeError), staged_directory(final, force=True) as stage:
        (stage / "new.tif").write_bytes(b"new")
        raise RuntimeError("checksum")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["set"]
    assert [p.name for p in final.iterdir()] == ["good.tif"]
    with staged_directory(final, force=True) as stage:
        (stage / "new.tif").write_bytes(b"new")
    assert [p.name for p in final.iterdir()] == ["new.tif"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["set"]
    shutil.rmtree(final)
