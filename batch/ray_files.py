"""Where a Ray run's files are: local paths or URIs of any pyarrow filesystem (``s3://``, ``gs://``,
``file://``), the rows the workers get (one per image, its output named as the local CLI names it),
and reading and writing such files from a worker."""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import re
import tempfile
import types
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..models.files import PARTIAL_SUFFIX, atomic_destination, partial_prefix
from .formats import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from .imageio import WriteSettings
from .naming import RESTORED_NAME, earlier_outputs, expand_inputs, output_path

# pyarrow filesystems whose objects appear whole when their upload completes (no rename needed, or cheap).
OBJECT_STORES = ("s3", "gcs", "abfs")
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")

# ---------------------------------------------------------------------------------------------- where files are


def is_uri(text: str | Path) -> bool:
    return isinstance(text, str) and URI.match(text) is not None


def filesystem(uri: str):
    """The pyarrow filesystem of ``uri`` and the path inside it."""
    from pyarrow.fs import FileSystem

    return FileSystem.from_uri(uri)


def as_path(fs_path: str) -> Path:
    """A path inside a filesystem as an absolute ``Path``, for :func:`output_path` (object stores have none)."""
    return Path("/", fs_path)


def display_uri(uri: str, fs_path: str) -> str:
    """How the report names a file of ``uri``'s filesystem: the scheme, then the path (query left out)."""
    return f"{uri.split('://', 1)[0]}://{fs_path}"


def uri_of_path(path: Path) -> str | Path:
    """``-o s3://bucket/out`` reaches us through ``type=Path``, which folds ``//``: give the URI back."""
    match = re.fullmatch(r"([A-Za-z][A-Za-z0-9+.-]+):/(.*)", str(path), re.DOTALL)
    if match is None:
        return path
    scheme, rest = match.groups()
    return f"{scheme}:///{rest}" if scheme == "file" else f"{scheme}://{rest}"


@dataclass
class Source:
    """An input: what the report calls it, and where a worker reads it (a local path, or a URI's filesystem)."""

    shown: str
    path: str
    root: str | None = None  # the URI whose filesystem holds ``path``; None: a local file

    def key(self) -> Path:
        """Its identity among inputs and outputs: resolved on a disk (``file://`` too), else inside its store."""
        return Path(self.path).resolve() if self.root is None or self.path.startswith("/") else as_path(self.path)


def expand_uri(pattern: str, output_key: Path | None) -> tuple[list[Source], list[dict]]:
    """Files of a URI: a file, a folder's images (not recursive) or a glob in the last part, as for local paths."""
    from pyarrow.fs import FileSelector, FileType

    try:
        fs, path = filesystem(pattern)
        info = fs.get_file_info(path)
        if info.type == FileType.Directory:
            listed = fs.get_file_info(FileSelector(path, recursive=False))
            found = sorted(i.path for i in listed if i.type == FileType.File and _is_image(i.path))
            if output_key is not None and as_path(path) == output_key:
                found = [f for f in found if not RESTORED_NAME.fullmatch(PurePosixPath(f).stem)]
            if not found:
                return [], [{"input": pattern, "error": f"folder {pattern} holds no images ({IMAGE_SUFFIXES})"}]
        elif info.type == FileType.File:
            found = [path]
        else:
            parent, name = path.rsplit("/", 1) if "/" in path else ("", path)
            listed = fs.get_file_info(FileSelector(parent, recursive=False, allow_not_found=True))
            found = sorted(i.path for i in listed if i.type == FileType.File and fnmatch.fnmatch(i.base_name, name))
            if not found:
                return [], [{"input": pattern, "error": f"{pattern} matches no file"}]
    except (OSError, ValueError) as error:  # pyarrow: ArrowIOError is an OSError, ArrowInvalid a ValueError
        return [], [{"input": pattern, "error": f"{pattern} cannot be listed ({error})"}]
    return [Source(display_uri(pattern, f), f, pattern) for f in found], []


def _is_image(fs_path: str) -> bool:
    return PurePosixPath(fs_path).suffix.lower() in IMAGE_SUFFIXES


def plan(inputs: Sequence[str | Path], output: str | Path, settings: WriteSettings) -> tuple[list[dict], list[dict]]:
    """Rows for the workers, one per input file, with its output named as the local CLI names it; and
    report entries for inputs that name nothing."""
    if is_uri(output):
        out_fs, out_path = filesystem(str(output))
        local_output = Path(out_path) if out_fs.type_name == "local" else None
        folder = Path(out_path) if local_output is not None else as_path(out_path)
    else:
        local_output = folder = Path(output)
    sources: list[Source] = []
    problems: list[dict] = []
    seen: set[Path] = set()
    for pattern in inputs:
        if is_uri(pattern):
            found, bad = expand_uri(str(pattern), folder)
        else:
            files, bad = expand_inputs([str(pattern)], folder)
            clips = [file for file in files if file.suffix.lower() in VIDEO_SUFFIXES]
            bad += [{"input": str(clip), "error": f"{clip} is a video: restore videos without --ray"} for clip in clips]
            found = [Source(str(file), os.path.abspath(file)) for file in files if file not in clips]
        problems += bad
        for source in found:
            if source.key() not in seen:
                seen.add(source.key())
                sources.append(source)
    taken = set(seen)
    earlier = earlier_outputs(folder) if local_output is not None else frozenset()
    rows = []
    for index, source in enumerate(sources):
        source_path = PurePosixPath(source.path)
        destination, kind = output_path(source_path, folder, settings, taken, earlier)  # type: ignore[arg-type]
        if not is_uri(output):
            shown, path, root = str(destination), os.path.abspath(destination), None
        elif local_output is not None:
            shown, path, root = display_uri(str(output), str(destination)), str(destination), str(output)
        else:
            fs_path = str(destination)[1:]
            shown, path, root = display_uri(str(output), fs_path), fs_path, str(output)
        rows.append(
            {"index": index, "input": source.shown, "output": shown, "kind": kind, "source_path": source.path,
             "source_root": source.root, "destination_path": path, "destination_root": root}
        )  # fmt: skip
    return rows, problems


def existing_outputs(rows: list[dict]) -> set[int]:
    """Rows whose output exists already (``--skip-existing``): one listing per output folder."""
    from pyarrow.fs import FileSelector, FileType

    done: set[int] = set()
    listings: dict[tuple[str | None, str], set[str]] = {}
    for row in rows:
        root, path = row["destination_root"], row["destination_path"]
        if root is None:
            if Path(path).exists():
                done.add(row["index"])
            continue
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if (root, parent) not in listings:
            fs = filesystem(root)[0]
            listed = fs.get_file_info(FileSelector(parent, allow_not_found=True))
            listings[root, parent] = {i.path for i in listed if i.type == FileType.File}
        if path in listings[root, parent]:
            done.add(row["index"])
    return done


# ---------------------------------------------------------------------------------------------- in the workers


class RemoteImage:
    """A file in a pyarrow filesystem that :func:`~.imageio.read_image` reads as it reads a path.

    ``stat()`` gives its size; ``read``/``seek``/``tell`` serve Pillow from a copy fetched whole
    on first use (a decoder's many small reads never go over the network); ``str()`` is the
    URI, which error messages name.
    """

    def __init__(self, fs, path: str, shown: str) -> None:
        self.fs, self.path, self.shown = fs, path, shown
        self.name = PurePosixPath(path).name
        self._data: io.BytesIO | None = None

    def __str__(self) -> str:
        return self.shown

    def __repr__(self) -> str:  # Pillow names an unreadable file object by its repr
        return repr(self.shown)

    def stat(self):
        from pyarrow.fs import FileType

        info = self.fs.get_file_info(self.path)
        if info.type != FileType.File:
            raise FileNotFoundError(2, "No such file", self.shown)
        return types.SimpleNamespace(st_size=info.size)

    def _buffer(self) -> io.BytesIO:
        if self._data is None:
            with self.fs.open_input_file(self.path) as file:
                self._data = io.BytesIO(file.read())
        return self._data

    def read(self, size: int = -1) -> bytes:
        return self._buffer().read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._buffer().seek(offset, whence)

    def tell(self) -> int:
        return self._buffer().tell()


def upload(local: Path, fs, path: str) -> None:
    """Put a written file at ``path`` of ``fs`` so that readers see all of it or nothing.

    An object store shows an object only once its upload completes; elsewhere (a disk, HDFS)
    a temporary file beside the destination, named as ``models.files`` names its own
    (``.NAME.PID.XXXX.partial``, so a killed writer's is cleaned up), is renamed into place.
    """
    from pyarrow.fs import FileType

    data = local.read_bytes()
    if fs.type_name in OBJECT_STORES:
        with fs.open_output_stream(path) as stream:
            stream.write(data)
        return
    parent, name = path.rsplit("/", 1)
    fs.create_dir(parent, recursive=True)
    temporary = f"{parent}/{partial_prefix(name)}{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
    try:
        with fs.open_output_stream(temporary) as stream:
            stream.write(data)
        fs.move(temporary, path)
    finally:
        if fs.get_file_info(temporary).type != FileType.NotFound:
            fs.delete_file(temporary)


def local_weights(weights: str) -> str:
    """A local copy of weights named by a URI, fetched once per node (atomically); other names as they are."""
    if not is_uri(weights):
        return weights
    fs, path = filesystem(weights)
    if fs.type_name == "local":
        return path
    size = fs.get_file_info(path).size
    folder = Path(tempfile.gettempdir()) / "codeformer_nodes_weights" / hashlib.sha256(weights.encode()).hexdigest()
    copy = folder / PurePosixPath(path).name
    if not copy.is_file() or copy.stat().st_size != size:
        with atomic_destination(copy) as partial, fs.open_input_stream(path) as stream, partial.open("wb") as file:
            while chunk := stream.read(16 << 20):
                file.write(chunk)
    return str(copy)
