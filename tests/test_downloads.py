"""Fetching weights from a local HTTP server: resume a cut transfer, refuse a bad file, honour a
mirror, and leave nothing behind after a failure. Small stand-in files with their own hashes."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from codeformer_nodes.models import WeightsFileError
from codeformer_nodes.models.downloads import MIRROR_VARIABLE, PinnedFile, locate

CONTENT = bytes(range(256)) * 1200  # 300 KiB


class Server(http.server.ThreadingHTTPServer):
    """Serves ``files``; ``cut_once`` names files whose first whole-file answer stops halfway."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.cut_once: set[str] = set()
        self.ranges: list[str | None] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        name = self.path.rsplit("/", 1)[-1]
        data = self.server.files.get(name)
        if data is None:
            self.send_error(404)
            return
        requested = self.headers.get("Range")
        self.server.ranges.append(requested)
        start = int(requested.removeprefix("bytes=").rstrip("-")) if requested else 0
        self.send_response(206 if requested else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if name in self.server.cut_once and not requested:
            self.server.cut_once.discard(name)
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        self.wfile.write(data[start:])

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()


def pinned(name: str, url: str, data: bytes = CONTENT, checked: list[Path] | None = None) -> PinnedFile:
    seen = [] if checked is None else checked
    return PinnedFile(name, url, len(data), hashlib.sha256(data).hexdigest(), seen.append)


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_a_cut_transfer_resumes_where_it_stopped(server, tmp_path):
    server.files["weights.pth"] = CONTENT
    server.cut_once.add("weights.pth")
    checked: list[Path] = []
    progress: list[tuple[int, int | None]] = []
    file = pinned("weights.pth", f"{server.base}/release/weights.pth", checked=checked)
    path = locate(file, [tmp_path / "models", tmp_path / "cache"], lambda done, total: progress.append((done, total)))
    assert path == tmp_path / "models" / "weights.pth" and path.read_bytes() == CONTENT
    assert server.ranges == [None, f"bytes={len(CONTENT) // 2}-"], "the second request asks for the rest only"
    assert len(checked) == 1, "the keys are checked before the file is kept"
    assert progress[-1] == (len(CONTENT), len(CONTENT))
    assert leftovers(tmp_path / "models") == ["weights.pth"]
    assert locate(file, [tmp_path / "cache", tmp_path / "models"]) == path, "found, not fetched again"
    assert len(server.ranges) == 2


def test_a_file_that_fails_its_hash_is_refused_and_removed(server, tmp_path):
    server.files["weights.pth"] = CONTENT[:-1] + b"X"  # same size, other bytes
    file = pinned("weights.pth", f"{server.base}/weights.pth")
    with pytest.raises(WeightsFileError, match="sha256 is .* not the official weights.pth's") as error:
        locate(file, [tmp_path / "models"])
    assert "deleted" in str(error.value)
    assert leftovers(tmp_path / "models") == []
    server.files["weights.pth"] = CONTENT[: len(CONTENT) // 3]
    with pytest.raises(WeightsFileError, match="gave 102,400 bytes, not the 307,200"):
        locate(file, [tmp_path / "models"])
    assert leftovers(tmp_path / "models") == []


def test_a_file_whose_keys_are_wrong_is_refused_and_removed(server, tmp_path):
    server.files["weights.pth"] = CONTENT

    def refuse(path: Path) -> None:
        raise WeightsFileError(f"{path} does not hold the expected network")

    file = replace(pinned("weights.pth", f"{server.base}/weights.pth"), check=refuse)
    with pytest.raises(WeightsFileError, match="does not hold the expected network"):
        locate(file, [tmp_path / "models"])
    assert leftovers(tmp_path / "models") == []


def test_the_mirror_variable_replaces_the_release_host(server, tmp_path, monkeypatch):
    server.files["weights.pth"] = CONTENT
    file = pinned("weights.pth", "http://127.0.0.1:9/unreachable/weights.pth")
    monkeypatch.setenv(MIRROR_VARIABLE, f"{server.base}/mirror/")
    assert locate(file, [tmp_path / "models"]).read_bytes() == CONTENT


def test_offline_names_the_file_the_url_the_folders_and_the_command(tmp_path):
    file = pinned("weights.pth", "http://127.0.0.1:9/release/weights.pth")
    folders = [tmp_path / "models", tmp_path / "cache"]
    with pytest.raises(WeightsFileError) as error:
        locate(file, folders)
    message = str(error.value)
    for part in ("weights.pth", "http://127.0.0.1:9/release/weights.pth", str(folders[0]), str(folders[1])):
        assert part in message
    assert "codeformer-fetch weights.pth" in message and MIRROR_VARIABLE in message
    assert leftovers(tmp_path / "models") == []


def test_official_files_are_pinned_and_a_bare_name_fetches_the_official_checkpoint(tmp_path, monkeypatch):
    from codeformer_nodes import load_codeformer
    from codeformer_nodes.models.auxiliary import DETECTOR_WEIGHTS, PARSENET_WEIGHTS
    from codeformer_nodes.models.official import OFFICIAL_CHECKPOINTS

    assert OFFICIAL_CHECKPOINTS["restoration"].sha256.startswith("1009e537")
    assert OFFICIAL_CHECKPOINTS["inpainting"].size == 370_786_611
    assert all(w.file.sha256 and w.file.size for w in (*DETECTOR_WEIGHTS.values(), PARSENET_WEIGHTS))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(MIRROR_VARIABLE, "http://127.0.0.1:9")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        WeightsFileError, match=r"codeformer.pth is in none of .*cache.*codeformer-fetch codeformer.pth"
    ):
        load_codeformer("codeformer.pth")
