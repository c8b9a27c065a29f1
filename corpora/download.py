"""Download the public corpus releases (lhotse-style recipes): fetch, verify, extract, lay out.

``download_corpus("maptask", "corpora")`` fetches GitHub's tar.gz archive of the pinned commit over
HTTPS (streamed with urllib, tqdm progress bar), checks its SHA-256, and lays the files out as the
readers expect::

    corpora/maptask/timed-units/<dialogue>.<g|f>.timed-units.xml
    corpora/maptask/moves/<dialogue>.<g|f>.moves.xml
    corpora/mrda/database/<meeting>.dadb
    corpora/mrda/splits/{train,val,test}_split.txt
    corpora/mrda/{basic,full}_label_map.txt

The layout step is tolerant: it finds ``*.timed-units.xml``, ``*.moves.xml``, ``*.dadb`` and the split
files wherever they sit in the archive (the Map Task mirror nests them under
``maptaskv2-1/Data/``; the MRDA repository under ``mrda_archive/database/`` and ``mrda_data/metadata/``,
where the validation split is called ``eval_split.txt``).

Checksums: the SHA-256 of each archive is pinned in ``SOURCES``. A value of ``None`` means it is not
pinned yet (this code was written without access to GitHub): the archive is then accepted, its
SHA-256 is computed and printed, and you should pin it in ``SOURCES`` (or pass ``sha256=``) so later
downloads are verified. When a checksum is known, a mismatch raises ``DownloadError`` and the
downloaded file is deleted.

The whole operation is atomic: the archive is downloaded and extracted inside a temporary folder in
``dest`` and renamed into place at the end; any failure leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .errors import CorpusError

GITHUB_CODELOAD = "https://codeload.github.com"
_CHUNK = 1 << 20  # bytes per read


class DownloadError(CorpusError):
    """A download failed: unreachable host, HTTP error, checksum mismatch, unsafe or incomplete archive."""


@dataclass(frozen=True)
class Source:
    """A pinned GitHub release: ``repo`` (owner/name), ``commit``, archive ``sha256`` (None: not pinned)."""

    repo: str
    commit: str
    sha256: str | None
    license: str

    def url(self, base_url: str | None = None) -> str:
        """The archive URL: ``<host>/<owner>/<name>/tar.gz/<commit>`` (GitHub's codeload scheme)."""
        host = (base_url or GITHUB_CODELOAD).rstrip("/")
        return f"{host}/{self.repo}/tar.gz/{self.commit}"


SOURCES: dict[str, Source] = {
    "maptask": Source("pastav/HCRC_Map_Task", "cb3701b602d5b4c7a2ee4fcd6a64dae724119e90", None,
                      "CC BY-NC-SA 2.5 (research use)"),
    "mrda": Source("NathanDuran/MRDA-Corpus", "58006b32d4e36ca518e365899924cd56035466a2", None,
                   "the repository's LICENSE; transcripts from ICSI's public MRDA release"),
}


def download_corpus(name: str, dest: str | Path, *, base_url: str | None = None, progress: bool = True,
                    sha256: str | None = None, force: bool = False) -> Path:
    """Download corpus ``name`` (``"maptask"`` or ``"mrda"``) into ``dest/<name>`` and return that folder.

    ``base_url`` replaces ``https://codeload.github.com`` (a mirror, or a local server in tests).
    ``sha256`` overrides the pinned checksum in ``SOURCES``. If neither is known, the archive's SHA-256
    is printed with a request to pin it. An existing ``dest/<name>`` is kept unless ``force``.
    """
    if name not in SOURCES:
        raise ValueError(f"unknown corpus {name!r}; known: {sorted(SOURCES)}")
    source = SOURCES[name]
    url = source.url(base_url)
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise ValueError(f"{url}: only http(s) URLs are supported")
    dest = Path(dest)
    target = dest / name
    if target.exists() and any(target.iterdir()) and not force:
        print(f"{target} exists; not downloading again (force=True to replace it)", file=sys.stderr)
        return target

    created_dest = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=dest, prefix=f".{name}-download-") as tmp:
            archive = Path(tmp) / f"{name}-{source.commit}.tar.gz"
            digest = _fetch(url, archive, progress=progress)
            expected = (sha256 or source.sha256 or "").lower() or None
            if expected is None:
                print(f"{name}: SHA-256 of {url} is {digest}\n"
                      f"  not verified: pin it in backchannel.corpora.download.SOURCES[{name!r}] "
                      f"(or pass sha256=) so later downloads are checked.", file=sys.stderr)
            elif digest != expected:
                archive.unlink()
                raise DownloadError(url, f"SHA-256 mismatch: expected {expected}, got {digest}; "
                                         "the download was deleted")
            staged = Path(tmp) / name
            try:
                _LAYOUTS[name](archive, staged, url)
            except (tarfile.TarError, EOFError, zlib.error) as err:
                raise DownloadError(url, f"not a readable tar.gz archive: {err}") from None
            archive.unlink()
            if target.exists():  # force: move the old copy aside; the temporary folder removes it
                os.replace(target, Path(tmp) / "replaced")
            os.replace(staged, target)
    except BaseException:
        if created_dest and dest.exists() and not any(dest.iterdir()):
            dest.rmdir()
        raise
    return target


def _fetch(url: str, path: Path, *, progress: bool) -> str:
    """Stream ``url`` to ``path``; return the hex SHA-256 of the bytes written."""
    sha = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "backchannel-download/0.1"})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp, open(path, "wb") as out:
            total = resp.headers.get("Content-Length")
            with tqdm(total=int(total) if total else None, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=path.name, disable=not progress) as bar:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    sha.update(chunk)
                    bar.update(len(chunk))
            if total and out.tell() != int(total):
                raise DownloadError(url, f"incomplete download: {out.tell()} of {total} bytes")
    except urllib.error.HTTPError as err:
        raise DownloadError(url, f"HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise DownloadError(url, f"cannot reach the server: {err.reason}") from None
    except OSError as err:  # connection reset, timeout mid-stream
        raise DownloadError(url, f"download interrupted: {err}") from None
    return sha.hexdigest()


def _safe_members(tar: tarfile.TarFile, origin: str) -> list[tarfile.TarInfo]:
    """All members, after rejecting absolute paths, ``..`` components, links and device files."""
    members = tar.getmembers()
    for m in members:
        name = m.name.replace("\\", "/")
        if name.startswith("/") or posixpath.isabs(name) or (len(name) > 1 and name[1] == ":"):
            raise DownloadError(origin, f"unsafe archive: absolute path {m.name!r}")
        if ".." in name.split("/"):
            raise DownloadError(origin, f"unsafe archive: member {m.name!r} leaves the extraction folder")
        if m.issym() or m.islnk():
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), m.linkname))
            if m.linkname.startswith("/") or target.startswith(".."):
                raise DownloadError(origin, f"unsafe archive: link {m.name!r} -> {m.linkname!r}")
        elif not (m.isfile() or m.isdir()):
            raise DownloadError(origin, f"unsafe archive: special file {m.name!r}")
    return members


def _pick(members: list[tarfile.TarInfo], matches, prefer_dir: str | None = None) -> dict:
    """Regular files whose basename satisfies ``matches``, one per basename.

    Where a basename occurs more than once, the copy inside a folder named ``prefer_dir`` wins, then the
    shallowest path.
    """
    chosen: dict[str, tarfile.TarInfo] = {}

    def rank(m: tarfile.TarInfo) -> tuple:
        parts = m.name.split("/")
        return (len(parts) < 2 or parts[-2] != prefer_dir, len(parts), m.name)

    for m in members:
        base = posixpath.basename(m.name)
        if m.isfile() and matches(base) and (base not in chosen or rank(m) < rank(chosen[base])):
            chosen[base] = m
    return chosen


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    src = tar.extractfile(member)
    if src is None:
        raise DownloadError(member.name, "cannot read archive member")
    with src, open(path, "wb") as out:
        shutil.copyfileobj(src, out, _CHUNK)


def _extract_license(tar: tarfile.TarFile, members, out: Path, name: str | None = None) -> None:
    """Copy the shallowest ``LICENSE*`` file (if any) to ``out/<name or its own name>``."""
    lic = [m for m in members if m.isfile() and posixpath.basename(m.name).upper().startswith("LICENSE")]
    lic.sort(key=lambda m: (m.name.count("/"), m.name))
    if lic:
        _extract(tar, lic[0], out / (name or posixpath.basename(lic[0].name)))


def _layout_maptask(archive: Path, out: Path, origin: str) -> None:
    """Map Task NXT release: ``timed-units/`` and ``moves/`` XML files, plus the licence."""
    with tarfile.open(archive, "r:gz") as tar:
        members = _safe_members(tar, origin)
        for folder, suffix in (("timed-units", ".timed-units.xml"), ("moves", ".moves.xml")):
            files = _pick(members, lambda b, s=suffix: b.endswith(s), prefer_dir=folder)
            if not files:
                raise DownloadError(origin, f"archive holds no *{suffix} files: not the Map Task release?")
            for base, m in sorted(files.items()):
                _extract(tar, m, out / folder / base)
        _extract_license(tar, members, out)


_MRDA_SPLITS = {"train_split.txt": "train_split.txt", "val_split.txt": "val_split.txt",
                "eval_split.txt": "val_split.txt", "test_split.txt": "test_split.txt"}


def _layout_mrda(archive: Path, out: Path, origin: str) -> None:
    """MRDA: ``database/*.dadb``, ``splits/{train,val,test}_split.txt``, the label maps and the licence."""
    with tarfile.open(archive, "r:gz") as tar:
        members = _safe_members(tar, origin)
        dadb = _pick(members, lambda b: b.endswith(".dadb"), prefer_dir="database")
        if not dadb:
            raise DownloadError(origin, "archive holds no *.dadb files: not the MRDA corpus?")
        for base, m in sorted(dadb.items()):
            _extract(tar, m, out / "database" / base)
        splits = _pick(members, lambda b: b in _MRDA_SPLITS, prefer_dir="metadata")
        # val_split.txt wins over eval_split.txt when both exist.
        for base in sorted(splits, key=lambda b: b != "val_split.txt"):
            path = out / "splits" / _MRDA_SPLITS[base]
            if not path.exists():
                _extract(tar, splits[base], path)
        missing = sorted({"train_split.txt", "val_split.txt", "test_split.txt"}
                         - {p.name for p in (out / "splits").glob("*.txt")})
        if missing:
            raise DownloadError(origin, f"archive lacks the split files {missing}")
        maps = _pick(members, lambda b: b in ("basic_label_map.txt", "full_label_map.txt"), "metadata")
        for base, m in sorted(maps.items()):
            _extract(tar, m, out / base)
        _extract_license(tar, members, out, "LICENSE.repo")


_LAYOUTS = {"maptask": _layout_maptask, "mrda": _layout_mrda}
