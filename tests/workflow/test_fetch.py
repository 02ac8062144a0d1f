"""`titans-dna fetch` against a real HTTP server on 127.0.0.1: downloads, retries, mirror, paths."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.fetch import DownloadPolicy, fetch, source_basename

BODY = b">chr1\n" + b"ACGTTGCA" * 4096 + b"\n"
SHA = hashlib.sha256(BODY).hexdigest()
FAST = DownloadPolicy(retries=2, backoff=0.05, timeout=5.0)


@pytest.fixture
def server(http_server) -> tuple[str, Counter]:
    """The test server's base URL and request counter, serving BODY as genome.fa."""
    http_server.files["genome.fa"] = BODY
    return http_server.url, http_server.hits


def _only(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_download_verifies_checksum(server, tmp_path: Path):
    base, hits = server
    out = tmp_path / "genome.fa"
    assert fetch(f"{base}/data/genome.fa", out, sha256=SHA, policy=FAST) == "download"
    assert out.read_bytes() == BODY and hits["/data/genome.fa"] == 1


def test_checksum_mismatch_fails_at_once_and_leaves_nothing(server, tmp_path: Path):
    base, hits = server
    out = tmp_path / "genome.fa"
    with pytest.raises(PipelineError, match=f"sha256 mismatch: expected {'0' * 64}, got {SHA}"):
        fetch(f"{base}/data/genome.fa", out, sha256="0" * 64, policy=FAST)
    assert _only(tmp_path) == [] and hits["/data/genome.fa"] == 1


def test_server_error_is_retried_then_fails_clearly(server, tmp_path: Path):
    base, hits = server
    start = time.monotonic()
    with pytest.raises(PipelineError, match="download failed after 3 attempts: HTTP 500"):
        fetch(f"{base}/error500/genome.fa", tmp_path / "genome.fa", sha256=SHA, policy=FAST)
    assert hits["/error500/genome.fa"] == 3
    assert time.monotonic() - start < 5  # backoff 0.05 + 0.1 s: bounded
    assert _only(tmp_path) == []


def test_transient_error_then_success(server, tmp_path: Path):
    base, hits = server
    fetch(f"{base}/flaky/genome.fa", tmp_path / "genome.fa", sha256=SHA, policy=FAST)
    assert (tmp_path / "genome.fa").read_bytes() == BODY and hits["/flaky/genome.fa"] == 2


def test_short_read_is_retried_and_never_kept(server, tmp_path: Path):
    base, hits = server
    with pytest.raises(PipelineError, match="after 3 attempts"):
        fetch(f"{base}/short/genome.fa", tmp_path / "genome.fa", sha256=SHA, policy=FAST)
    assert hits["/short/genome.fa"] == 3 and _only(tmp_path) == []


def test_not_found_is_not_retried(server, tmp_path: Path):
    base, hits = server
    with pytest.raises(PipelineError, match="HTTP 404"):
        fetch(f"{base}/data/absent.fa", tmp_path / "genome.fa", sha256=SHA, policy=FAST)
    assert hits["/data/absent.fa"] == 1


def test_mirror_is_read_first_and_a_bad_copy_is_ignored(server, tmp_path: Path):
    base, hits = server
    good, bad, out = tmp_path / "good", tmp_path / "bad", tmp_path / "out"
    for folder in (good, bad, out):
        folder.mkdir()
    (good / "genome.fa").write_bytes(BODY)
    (bad / "genome.fa").write_bytes(BODY + b"ACGT\n")
    url = f"{base}/data/genome.fa"
    assert fetch(url, out / "a.fa", sha256=SHA, mirrors=[good], policy=FAST) == "mirror"
    assert hits[url.removeprefix(base)] == 0
    assert fetch(url, out / "b.fa", sha256=SHA, mirrors=[bad], policy=FAST) == "download"
    assert (out / "b.fa").read_bytes() == BODY


def test_local_path_is_verified_and_copied(tmp_path: Path):
    src = tmp_path / "src.fa"
    src.write_bytes(BODY)
    assert fetch(str(src), tmp_path / "copy.fa", sha256=SHA.upper()) == "local"
    assert (tmp_path / "copy.fa").read_bytes() == BODY and not (tmp_path / "copy.fa").is_symlink()
    with pytest.raises(PipelineError, match="sha256 mismatch"):
        fetch(str(src), tmp_path / "bad.fa", sha256="f" * 64)
    with pytest.raises(PipelineError, match=r"absent\.fa: no such file"):
        fetch(str(tmp_path / "absent.fa"), tmp_path / "x.fa")
    assert _only(tmp_path) == ["copy.fa", "src.fa"]


def test_url_needs_a_checksum(tmp_path: Path):
    with pytest.raises(PipelineError, match="needs a sha256"):
        fetch("https://example.org/genome.fa", tmp_path / "g.fa")
    assert source_basename("https://example.org/a/b%20c.fa.gz?x=1") == "b c.fa.gz"


def test_cli_uses_the_mirror_environment_and_reports_errors(
    server, tmp_path: Path, monkeypatch, capsys
):
    base, hits = server
    mirror, out = tmp_path / "mirror", tmp_path / "out"
    mirror.mkdir()
    out.mkdir()
    (mirror / "genome.fa").write_bytes(BODY)
    monkeypatch.setenv("TITANS_DNA_MIRROR", str(mirror))
    url = f"{base}/error500/genome.fa"
    assert main(["fetch", url, "--sha256", SHA, "-o", str(out / "g.fa")]) == 0
    assert hits["/error500/genome.fa"] == 0  # served from the mirror
    monkeypatch.delenv("TITANS_DNA_MIRROR")
    argv = ["fetch", url, "--sha256", SHA, "-o", str(out / "h.fa"), "--retries", "1"]
    assert main([*argv, "--backoff", "0.01"]) == 3
    assert "titans-dna fetch: error: " in capsys.readouterr().err
    assert hits["/error500/genome.fa"] == 2 and not (out / "h.fa").exists()
