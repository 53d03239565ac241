"""Fetching the official weights when first needed: pinned, resumable, atomic, mirror-aware.

Each file this package can fetch is pinned by its published size and SHA-256 (where none
is published, by the keys it must hold). A download goes to ``.NAME.download`` in the
target folder, resumes from there with an HTTP range request when cut, is checked, and is
only then renamed into place; a file that fails its check is deleted. A mirror (for sites
that cannot reach the release hosts) replaces the release URL's folder:
``CODEFORMER_NODES_MIRROR=https://mirror.example/weights`` fetches ``.../codeformer.pth``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import WeightsFileError

MIRROR_VARIABLE = "CODEFORMER_NODES_MIRROR"
DOWNLOAD_SUFFIX = ".download"
TIMEOUT_SECONDS = 60
CHUNK_BYTES = 1 << 20
# A transfer cut this many times in a row (each resumed where it stopped) is given up.
MAX_ATTEMPTS = 5
FETCH_COMMAND = "codeformer-fetch"

# Called with (bytes so far, bytes in all or None) as a download proceeds.
ProgressCallback = Callable[[int, int | None], None]


@dataclass(frozen=True)
class PinnedFile:
    """A file this package can fetch, and what it must be.

    Attributes:
        name: file name, the same in every folder.
        url: the official release URL.
        size, sha256: the published figures; None where none are published.
        check: raises a ``WeightsFileError`` unless the file holds the expected network
            (its keys); the last word where no hash is published.
    """

    name: str
    url: str
    size: int | None
    sha256: str | None
    check: Callable[[Path], None]


def user_cache_dir() -> Path:
    """Per-user cache folder for fetched weights (XDG_CACHE_HOME honoured)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "codeformer_nodes"


def source_url(file: PinnedFile) -> str:
    mirror = os.environ.get(MIRROR_VARIABLE, "").strip()
    return f"{mirror.rstrip('/')}/{file.name}" if mirror else file.url


def locate(file: PinnedFile, folders: list[Path], progress: ProgressCallback | None = None) -> Path:
    """The file from the first folder that has it, else fetched into the first folder.

    Without a ``progress`` callback, a fetch shows a bar when stderr is a terminal.
    """
    for folder in folders:
        if (folder / file.name).is_file():
            return folder / file.name
    try:
        if progress is not None or not sys.stderr.isatty():
            return fetch(file, folders[0], progress)
        from tqdm import tqdm

        with tqdm(desc=file.name, total=file.size, unit="B", unit_scale=True, file=sys.stderr) as bar:
            return fetch(file, folders[0], lambda done, total: bar.update(done - bar.n))
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise WeightsFileError(
            f"{file.name} is in none of {', '.join(str(folder) for folder in folders)} and could not be "
            f"downloaded from {source_url(file)} ({reason}). On a machine with internet run "
            f"`{FETCH_COMMAND} {file.name}` (or set {MIRROR_VARIABLE} to a mirror you can reach), or put the "
            "file into one of those folders."
        ) from error


def fetch(file: PinnedFile, folder: Path, progress: ProgressCallback | None = None) -> Path:
    """Download ``file`` into ``folder``, resuming a cut transfer; check it; then move it into place.

    Folders are made only to hold the file: those this call made are removed again when the fetch
    fails with nothing in them (an offline first run leaves no empty folder behind)."""
    made = _missing_folders(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fetched = False
    try:
        destination = _fetch_into(file, folder, progress)
        fetched = True
        return destination
    finally:
        if not fetched:
            for made_folder in made:  # deepest first
                if any(made_folder.iterdir()):
                    break
                made_folder.rmdir()


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _fetch_into(file: PinnedFile, folder: Path, progress: ProgressCallback | None) -> Path:
    partial = folder / f".{file.name}{DOWNLOAD_SUFFIX}"
    url = source_url(file)
    for attempt in range(MAX_ATTEMPTS):
        try:
            _transfer(url, partial, file.size, progress)
            break
        except (http.client.IncompleteRead, ConnectionError, TimeoutError) as error:
            if attempt == MAX_ATTEMPTS - 1:
                raise ConnectionError(f"the transfer was cut {MAX_ATTEMPTS} times ({error})") from error
    try:
        verify(file, partial, url)
    except WeightsFileError:
        partial.unlink(missing_ok=True)
        raise
    destination = folder / file.name
    os.replace(partial, destination)
    return destination


def verify(file: PinnedFile, path: Path, url: str) -> None:
    """Size and SHA-256 against the published figures, then the network's keys."""
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        raise WeightsFileError(
            f"{url} gave {size:,} bytes, not the {file.size:,} of the official {file.name}; it was deleted. "
            "Fetch it again, or check the mirror."
        )
    if file.sha256 is not None and (digest := file_sha256(path)) != file.sha256:
        raise WeightsFileError(
            f"{url} gave a file whose sha256 is {digest}, not the official {file.name}'s {file.sha256}; "
            "it was deleted. Fetch it again, or check the mirror."
        )
    file.check(path)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (weights are hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _transfer(url: str, partial: Path, expected: int | None, progress: ProgressCallback | None) -> None:
    """Fetch ``url`` into ``partial``, continuing from the bytes already there."""
    have = partial.stat().st_size if partial.exists() else 0
    if expected is not None and have >= expected:
        partial.unlink()  # complete yet unchecked (or too long): start over rather than trust it
        have = 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        resumed = have and response.status == 206
        done = have if resumed else 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length else expected
        with partial.open("ab" if resumed else "wb") as out:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        if total is not None and done < total:
            raise http.client.IncompleteRead(b"", total - done)
