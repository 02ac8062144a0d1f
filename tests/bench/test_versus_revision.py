"""bench/versus_revision.py: a revision's titans_dna imports beside the working tree's."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import versus_revision  # noqa: E402


def test_exported_revision_is_a_separate_package(tmp_path: Path, monkeypatch) -> None:
    versus_revision.export_revision("HEAD", tmp_path)
    package = tmp_path / versus_revision.BASE_PACKAGE
    sources = list(package.rglob("*.py"))
    assert sources and not any("titans_dna" in p.read_text() for p in sources)
    monkeypatch.syspath_prepend(str(tmp_path))
    layer = versus_revision.our_layer(versus_revision.BASE_PACKAGE)
    assert type(layer).__module__ == f"{versus_revision.BASE_PACKAGE}.layers.memory"
    assert Path(sys.modules[type(layer).__module__].__file__).is_relative_to(tmp_path)
