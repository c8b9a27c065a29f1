"""download_corpus against a loopback HTTP server serving archives built here."""
from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from backchannel.corpora.download import SOURCES, DownloadError, download_corpus

MT = SOURCES["maptask"]
MRDA = SOURCES["mrda"]
TU = ('<?xml version="1.0" encoding="UTF-8"?>\n<nite:root xmlns:nite="http://nite.sourceforge.net/" '
      'id="tu.q1ec1.g">\n<tu id="q1ec1g.1" start="0.0000" end="0.3294" utt="1">okay</tu>\n</nite:root>\n')


def make_tar(path: Path, files: dict[str, bytes]) -> str:
    """Write a tar.gz with ``files`` (member name -> bytes); return its SHA-256."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def maptask_files(top: str = f"HCRC_Map_Task-{MT.commit}") -> dict[str, bytes]:
    data = f"{top}/maptaskv2-1/Data"
    return {
        f"{top}/LICENSE.html": b"<html>CC BY-NC-SA 2.5</html>",
        f"{data}/timed-units/q1ec1.g.timed-units.xml": TU.encode(),
        f"{data}/timed-units/q1ec1.f.timed-units.xml": TU.replace("q1ec1.g", "q1ec1.f").encode(),
        f"{data}/moves/q1ec1.g.moves.xml": b"<moves g/>",
        f"{data}/moves/q1ec1.f.moves.xml": b"<moves f/>",
        f"{data}/disfluencies/q1ec1.g.disf.xml": b"<disf/>",
        f"{top}/csv_dataset/moves/q1ec1.g.moves.csv": b"a,b\n",
    }


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path/www`` on 127.0.0.1 (random port); yields (root folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def publish(root: Path, source, files: dict[str, bytes]) -> str:
    """Place an archive where ``source.url(base)`` points; return its SHA-256."""
    path = root / source.repo / "tar.gz" / source.commit
    path.parent.mkdir(parents=True)
    return make_tar(path, files)


def test_maptask_download_lays_out_files(server, tmp_path):
    root, base = server
    digest = publish(root, MT, maptask_files())
    out = download_corpus("maptask", tmp_path / "corpora", base_url=base, progress=False, sha256=digest)
    assert out == tmp_path / "corpora" / "maptask"
    assert sorted(p.name for p in (out / "timed-units").iterdir()) == [
        "q1ec1.f.timed-units.xml", "q1ec1.g.timed-units.xml"]
    assert (out / "timed-units" / "q1ec1.g.timed-units.xml").read_text() == TU
    assert (out / "moves" / "q1ec1.f.moves.xml").read_bytes() == b"<moves f/>"
    assert (out / "LICENSE.html").exists()
    assert not (out / "disfluencies").exists()
    # Nothing else is left in dest: no archive, no temporary folder.
    assert [p.name for p in (tmp_path / "corpora").iterdir()] == ["maptask"]


def test_unpinned_checksum_is_printed(server, tmp_path, capsys):
    root, base = server
    digest = publish(root, MT, maptask_files())
    assert MT.sha256 is None or MT.sha256 != digest
    if MT.sha256 is not None:
        pytest.skip("checksum pinned")
    download_corpus("maptask", tmp_path / "c", base_url=base, progress=False)
    err = capsys.readouterr().err
    assert digest in err and "pin" in err


def test_existing_corpus_is_kept_unless_forced(server, tmp_path):
    root, base = server
    digest = publish(root, MT, maptask_files())
    (tmp_path / "c" / "maptask").mkdir(parents=True)
    (tmp_path / "c" / "maptask" / "mine.txt").write_text("x")
    out = download_corpus("maptask", tmp_path / "c", base_url=base, progress=False, sha256=digest)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    out = download_corpus("maptask", tmp_path / "c", base_url=base, progress=False, sha256=digest, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["LICENSE.html", "moves", "timed-units"]


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    root, base = server
    publish(root, MT, maptask_files())
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        download_corpus("maptask", tmp_path / "c", base_url=base, progress=False, sha256="0" * 64)
    assert not (tmp_path / "c").exists()


def test_checksum_mismatch_keeps_existing_dest_folder_clean(server, tmp_path):
    root, base = server
    publish(root, MT, maptask_files())
    (tmp_path / "c").mkdir()
    with pytest.raises(DownloadError):
        download_corpus("maptask", tmp_path / "c", base_url=base, progress=False, sha256="f" * 64)
    assert list((tmp_path / "c").iterdir()) == []


@pytest.mark.parametrize("evil", ["../evil.timed-units.xml", "top/../../evil.txt", "/tmp/evil.moves.xml"])
def test_malicious_archive_is_rejected(server, tmp_path, evil):
    root, base = server
    files = maptask_files()
    files[evil] = b"pwned"
    digest = publish(root, MT, files)
    with pytest.raises(DownloadError, match="unsafe archive"):
        download_corpus("maptask", tmp_path / "c", base_url=base, progress=False, sha256=digest)
    assert not (tmp_path / "c").exists()
    assert not (tmp_path / "evil.timed-units.xml").exists()


def test_symlink_out_of_archive_is_rejected(server, tmp_path):
    root, base = server
    path = root / MT.repo / "tar.gz" / MT.commit
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("top/link.timed-units.xml")
        info.type, info.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        tar.addfile(info)
    with pytest.raises(DownloadError, match="unsafe archive: link"):
        download_corpus("maptask", tmp_path / "c", base_url=base, progress=False)


def test_http_404_is_a_clear_error(server, tmp_path):
    _, base = server
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        download_corpus("maptask", tmp_path / "c", base_url=base, progress=False)
    assert MT.commit in str(err.value)  # the message names the URL
    assert not (tmp_path / "c").exists()


def test_wrong_archive_content_is_a_clear_error(server, tmp_path):
    root, base = server
    digest = publish(root, MT, {"top/README.md": b"hello"})
    with pytest.raises(DownloadError, match=r"no \*\.timed-units\.xml"):
        download_corpus("maptask", tmp_path / "c", base_url=base, progress=False, sha256=digest)
    assert not (tmp_path / "c").exists()


def test_not_a_tarball_is_a_clear_error(server, tmp_path):
    root, base = server
    path = root / MT.repo / "tar.gz" / MT.commit
    path.parent.mkdir(parents=True)
    path.write_bytes(b"<html>not an archive</html>")
    with pytest.raises(DownloadError, match="not a readable tar.gz"):
        download_corpus("maptask", tmp_path / "c", base_url=base, progress=False)


def test_mrda_layout_maps_eval_split_to_val(server, tmp_path):
    root, base = server
    top = f"MRDA-Corpus-{MRDA.commit}"
    files = {
        f"{top}/LICENSE": b"GPL",
        f"{top}/mrda_archive/database/Bed003.dadb": b"38.951,39.261,Bed003-c3_0038951_0039261,A\n",
        f"{top}/mrda_archive/database/Bmr005.dadb": b"1,2,x\n",
        f"{top}/mrda_data/metadata/train_split.txt": b"Bed003",
        f"{top}/mrda_data/metadata/eval_split.txt": b"Bmr005",
        f"{top}/mrda_data/metadata/test_split.txt": b"Bed006",
        f"{top}/mrda_data/metadata/basic_label_map.txt": b"Statement|S\n",
        f"{top}/mrda_data/train/Bed003.txt": b"ignored",
    }
    digest = publish(root, MRDA, files)
    out = download_corpus("mrda", tmp_path / "c", base_url=base, progress=False, sha256=digest)
    assert sorted(p.name for p in (out / "database").iterdir()) == ["Bed003.dadb", "Bmr005.dadb"]
    assert (out / "splits" / "val_split.txt").read_text() == "Bmr005"
    assert sorted(p.name for p in (out / "splits").iterdir()) == ["test_split.txt", "train_split.txt",
                                                                    "val_split.txt"]
    assert (out / "basic_label_map.txt").read_text() == "Statement|S\n"
    assert (out / "LICENSE.repo").read_bytes() == b"GPL"


def test_unknown_corpus_and_scheme():
    with pytest.raises(ValueError, match="unknown corpus"):
        download_corpus("switchboard", "/nonexistent")
    with pytest.raises(ValueError, match="only http"):
        download_corpus("maptask", "/nonexistent", base_url="file:///etc")
