"""Helpers for the workflow tests: a local HTTP server, demo configurations, Snakemake runs."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SNAKEFILE = REPO / "workflow" / "Snakefile"
DEFAULT_CONFIG = REPO / "config" / "config.yaml"
SHARED_PREFIX = "../shared/data/"


class Server:
    """An HTTP server on 127.0.0.1 serving `files` ({name: bytes}) under /MODE/NAME.

    Modes: `data` serves the file; `error500` always fails with 500; `flaky` fails with 503 on
    the first request, then serves; `short` promises the full length but sends 1000 bytes.
    `hits` counts requests per path.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: Counter = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                code, body, sent = server.answer(self.path)
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:sent])

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def answer(self, path: str) -> tuple[int, bytes, int]:
        """(status, body, bytes actually sent) for a request path."""
        _, mode, name = path.split("/", 2)
        body = self.files.get(name)
        if mode == "error500":
            return 500, b"server trouble", 14
        if body is None:
            return 404, b"not found", 9
        if mode == "flaky" and self.hits[path] == 1:
            return 503, b"busy", 4
        if mode == "short":
            return 200, body, 1000
        return 200, body, len(body)


@pytest.fixture
def http_server() -> Iterator[Server]:
    server = Server()
    thread = threading.Thread(target=server.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def demo_config(shared_data: Path) -> dict:
    """The default (demo) configuration with its relative paths made absolute, so that it runs
    in any folder: ../shared/data and the repository's pretrain configuration."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text().replace(SHARED_PREFIX, f"{shared_data}/"))
    config["pretrain"]["config"] = str(REPO / config["pretrain"]["config"])
    return config


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(
    workdir: Path,
    *args: str,
    config: Path | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in `workdir` (outputs stay there); output in .stdout."""
    command = [str(BIN / "snakemake"), "--snakefile", str(SNAKEFILE), "-d", str(workdir)]
    if config is not None:
        command += ["--configfile", str(config), "--replace-workflow-config"]
    return subprocess.run(
        [*command, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # Snakemake splits its messages between the two
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )
