# Copyright 2026 the codeformer-nodes authors. Licensed under the Apache License, Version 2.0.
"""A real ComfyUI server in a temp dir, with the pack linked into its custom_nodes, and plain HTTP to it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

MODEL_SUBDIRS = ("facerestore_models", "facedetection", "upscale_models")


class CheckFailed(Exception):
    """One workflow's FAIL reason (one line)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(base: str, path: str, data=None, timeout: float = 30):
    """GET, or POST JSON when data is given; returns (status, body bytes)."""
    req = urllib.request.Request(
        base + path,
        method="GET" if data is None else "POST",
        data=None if data is None else json.dumps(data).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class ComfyServer:
    """A ComfyUI process whose base dir, database and logs live in a temp dir."""

    def __init__(self, args, prefix: str = "browser_check_"):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.base = os.path.join(self.tmp, "base")
        self.log_path = os.path.join(self.tmp, "server.log")
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.input_names: list[str] = []
        self.pack_link = ""

    def start(self) -> None:
        a = self.args
        comfy_dir = os.path.abspath(a.comfy_dir)
        pack = os.path.abspath(a.pack.rstrip("/"))
        python = os.path.abspath(a.python)  # keep the venv path: no realpath
        for what, path in (
            ("--python", python),
            ("--comfy-dir main.py", os.path.join(comfy_dir, "main.py")),
            ("--pack __init__.py", os.path.join(pack, "__init__.py")),
        ):
            if not os.path.isfile(path):
                raise CheckFailed(f"{what} not found: {path}")
        for d in ("custom_nodes", "input", "output", "temp", "user", "models"):
            os.makedirs(os.path.join(self.base, d))
        self.pack_link = os.path.join(self.base, "custom_nodes", a.link_name or os.path.basename(pack))
        os.symlink(pack, self.pack_link)
        for img in a.input_image:
            self.input_names.append(os.path.basename(shutil.copy(img, os.path.join(self.base, "input"))))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = [
            python,
            os.path.join(comfy_dir, "main.py"),
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(port),
            "--disable-auto-launch",
            "--disable-api-nodes",
            "--base-directory",
            self.base,
            "--database-url",
            "sqlite:///" + os.path.join(self.base, "user", "comfyui.db"),
        ]
        if a.models_dir:
            md = os.path.abspath(a.models_dir)
            yaml_path = os.path.join(self.tmp, "extra_model_paths.yaml")
            with open(yaml_path, "w") as f:
                f.write(
                    "browser_check:\n"
                    + f"  base_path: {json.dumps(md)}\n"
                    + "".join(f"  {k}: {k}\n" for k in MODEL_SUBDIRS)
                )
            cmd += ["--extra-model-paths-config", yaml_path]
            for k in MODEL_SUBDIRS:  # also under the base dir, for code that reads models_dir directly
                if os.path.isdir(os.path.join(md, k)):
                    os.symlink(os.path.join(md, k), os.path.join(self.base, "models", k))
        cmd += a.server_arg
        env = dict(
            os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"
        )
        print("server:", " ".join(cmd), "\ntemp dir:", self.tmp, flush=True)
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.tmp,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        t0 = time.time()
        while True:
            if self.proc.poll() is not None:
                raise CheckFailed(f"server exited with rc={self.proc.returncode} during startup")
            if time.time() - t0 > a.start_timeout:
                raise CheckFailed(f"server not ready after {a.start_timeout:.0f}s")
            try:
                if http(self.url, "/queue", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        print(f"server ready in {time.time() - t0:.1f}s (pid {self.proc.pid})", flush=True)
        failed = [line for line in self.log().splitlines() if self.pack_link in line and "IMPORT FAILED" in line]
        if failed:
            raise CheckFailed(f"the pack failed to import: {failed[0].strip()} (see {self.log_path})")

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def print_log_tail(self, lines: int = 30) -> None:
        """The end of the server's log, after a failure (nothing when it never started)."""
        if self.proc is not None:
            print("--- server log tail ---\n" + "".join(self.log().splitlines(True)[-lines:]))

    def close(self, keep: bool) -> None:
        """Stop the server; remove its temp dir unless ``keep`` (then say where it is)."""
        self.stop()
        if keep:
            print("kept temp dir (server.log inside):", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(OSError):  # leftovers in the server's process group (pgid = its pid)
            os.killpg(self.proc.pid, signal.SIGKILL)


def png_size(blob: bytes):
    if blob[:8] == b"\x89PNG\r\n\x1a\n":
        return struct.unpack(">II", blob[16:24])
    return None
