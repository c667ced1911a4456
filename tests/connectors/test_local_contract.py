"""The local folder connector against the shared connector contract."""

from __future__ import annotations

import os

import pytest

from connectors.local import LocalFolderConnector
from tests.connectors.contract import ConnectorContract


class FolderSource:
    def __init__(self, root):
        self.root = root
        self._tick = 0

    def put(self, key, text):
        path = self.root / f"{key}.txt"
        path.write_text(text)
        self._tick += 1  # distinct mtimes even when writes land in the same clock tick
        os.utime(path, ns=(1_700_000_000_000_000_000 + self._tick, 1_700_000_000_000_000_000 + self._tick))

    def delete(self, key):
        (self.root / f"{key}.txt").unlink()

    def connector(self):
        return LocalFolderConnector(self.root, name="folder")

    def doc_id(self, key):
        return f"{key}.txt"


class TestLocalFolderContract(ConnectorContract):
    @pytest.fixture
    def source(self, tmp_path):
        return FolderSource(tmp_path)
