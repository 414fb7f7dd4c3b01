"""Downloading and unpacking dataset files: md5-checked, atomic (a killed download never leaves a
file that looks complete), serialised between processes (parallel sweep jobs, DDP ranks)."""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from pathlib import Path

from clexp.config.errors import one_line
from clexp.data.atomic import file_lock
from clexp.data.base import DataError

CHUNK = 1 << 20


def md5sum(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 - the official checksums are md5s
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: Path, md5: str | None, timeout: float = 60.0) -> Path:
    """`url` → `dest`, through `dest.part` (renamed once complete and its md5 is `md5`). Raises
    `DataError` (one line: the URL and why) when the download fails or the checksum differs; the
    partial file is removed either way."""
    import urllib.request

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    h = hashlib.md5()  # noqa: S324
    print(f"Downloading {url} → {dest}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:  # noqa: S310
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                h.update(block)
    except Exception as err:  # noqa: BLE001 - URLError, HTTPError, timeouts, OSError…
        part.unlink(missing_ok=True)
        raise DataError(f"downloading {url} failed ({type(err).__name__}: {one_line(err, 160)})") from None
    if md5 is not None and h.hexdigest() != md5:
        part.unlink(missing_ok=True)
        raise DataError(f"the file downloaded from {url} has md5 {h.hexdigest()}, not the official {md5} "
                        f"(a truncated or changed download); it was removed")
    os.replace(part, dest)
    return dest


def check_md5(path: Path, md5: str | None, source: str) -> None:
    """DataError when `path` exists but its md5 is not `md5`."""
    if md5 is not None and md5sum(path) != md5:
        raise DataError(f"the file {path} has md5 {md5sum(path)}, not the official {md5}: it is truncated or "
                        f"another file; delete it (it is downloaded again from {source}) or copy the official one "
                        f"there")


def extracted_marker(archive: Path) -> Path:
    return archive.with_name(f".{archive.name}.extracted")


def extract_zip(archive: Path, into: Path) -> None:
    """Unpack `archive` into `into` (member paths may not leave it); a marker file records a
    complete extraction, so that an interrupted one is redone."""
    into = Path(into).resolve()
    try:
        with zipfile.ZipFile(archive) as z:
            for member in z.infolist():
                target = (into / member.filename).resolve()
                if into != target and into not in target.parents:
                    raise DataError(f"the archive {archive} holds {member.filename!r}, outside the folder it "
                                    f"unpacks into; refusing to extract it")
            print(f"Extracting {archive} → {into}")
            z.extractall(into)
    except zipfile.BadZipFile as err:
        raise DataError(f"the archive {archive} is truncated or corrupt ({one_line(err, 120)}); delete it and "
                        f"download it again") from None
    extracted_marker(archive).write_text("ok\n")


def ensure_unpacked(folder: Path, archive: Path, url: str, md5: str | None, download: bool) -> str | None:
    """Make `folder` exist from `archive` (md5-checked before unpacking), downloading the archive from
    `url` when allowed. Returns None when it is there, else why not (one clause, for the caller's
    message). A folder that is there without its archive's marker is taken as the user's own copy."""
    marker = extracted_marker(archive)
    if folder.is_dir() and (marker.exists() or not archive.exists()):
        return None
    with file_lock(archive.with_name(f".{archive.name}.lock")):
        if folder.is_dir() and (marker.exists() or not archive.exists()):
            return None  # another process unpacked it meanwhile
        if not archive.exists():
            if not download:
                return f"did not find {folder.name}/ nor {archive.name} in {archive.parent} (dataset.download=false)"
            try:
                fetch(url, archive, md5)
            except DataError as err:
                return f"did not find {folder.name}/ nor {archive.name} in {archive.parent}; {err}"
        else:
            check_md5(archive, md5, url)
        if folder.is_dir():  # an interrupted extraction: start over
            shutil.rmtree(folder)
        extract_zip(archive, archive.parent)
        if not folder.is_dir():
            raise DataError(f"the archive {archive} does not hold the folder {folder.name}/; expected the official "
                            f"file from {url}")
    return None
