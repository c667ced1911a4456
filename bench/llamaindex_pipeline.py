"""LlamaIndex's side of the ingest comparison: the same corpus through a LlamaIndex `IngestionPipeline`.

    python bench/llamaindex_pipeline.py CORPUS WORK [--chunk-tokens 250] [--overlap-tokens 38]

Runs `build` once and prints its JSON; `bench/vs_llamaindex.py` runs it as a child process so that
every run, first or repeated, starts a fresh interpreter as `ragline ingest` does. Other benches
import `build` and `retrieve`.

The pipeline, written as a LlamaIndex user would write it, with ragline's settings:
  read     `SimpleDirectoryReader(recursive=True, filename_as_id=True)`: one Document per file, or
           per page of a PDF and per slide of a PPTX, each with LlamaIndex's default file metadata.
  split    `TokenTextSplitter(chunk_size, chunk_overlap)` counting MiniLM tokens (no special tokens),
           the count ragline's chunker uses.
  embed    `HuggingFaceEmbedding` over the bundled all-MiniLM-L6-v2 folder: batch 32, window 256,
           normalised, CPU.
  store    `QdrantVectorStore` over `QdrantClient(path=WORK/qdrant)`, qdrant-client's local mode.
  dedup    a `SimpleDocumentStore` persisted in WORK/pipeline with `DocstoreStrategy.UPSERTS`, so
           a re-run in a fresh process skips every document whose hash (text + metadata) is unchanged.
           It still reads and parses every file first: LlamaIndex compares documents, not listings.

Choices that keep the two pipelines doing the same work:
- Readers. `llama-index-readers-file` (LlamaIndex's PDF/DOCX/PPTX/CSV readers) requires pandas<3
  and pypdf<7; ragline pins pandas 3.1.1 and pypdf 7.1.1, so it is not installed. Without it
  llama-index-core reads every file as UTF-8 text, which turns PDF, DOCX and PPTX into byte noise.
  `READERS` below fills that gap with small `BaseReader`s that do what readers-file 0.7.0's
  PDFReader, DocxReader, PptxReader and PandasCSVReader do, on the libraries ragline uses
  (pypdf, python-docx, python-pptx, pandas). Markdown, HTML, plain text and e-mail are read as
  raw text, which is what readers-file's default mapping does for them too (HTML keeps its tags,
  an .eml its headers and MIME parts).
- Metadata is kept out of the embedded and split text (every key is excluded for embedding and
  for the LLM), so a node's text is at most `chunk_tokens` MiniLM tokens and the model embeds
  exactly that text, as ragline embeds exactly its chunk text. LlamaIndex's default would
  prepend `file_path` to every chunk and shrink the chunk to make room.
- The transformation cache is disabled: UPSERTS does the skipping, and the default cache would
  only add a JSON dump of every embedding to each run.

Every node carries `doc_id` (the file's path relative to the corpus) and, for pages and slides,
`page_start` = `page_end` = the reader's `page_label`, so retrieval can be scored against ragline's.
`retrieve` reads them from the node LlamaIndex stores; the Qdrant payload's own top-level `doc_id`
is overwritten by LlamaIndex with its document id (the absolute path, plus `_part_N` per page).
"""

from __future__ import annotations

import argparse
import atexit
import json
import resource
import sys
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ragline.offline import enforce_offline  # noqa: E402

enforce_offline()

from embedders.sentence_transformer import BUNDLED_MODEL_WINDOW, bundled_model_path  # noqa: E402
from llama_index.core import SimpleDirectoryReader, VectorStoreIndex  # noqa: E402
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline  # noqa: E402
from llama_index.core.node_parser import TokenTextSplitter  # noqa: E402
from llama_index.core.readers.base import BaseReader  # noqa: E402
from llama_index.core.readers.file.base import default_file_metadata_func  # noqa: E402
from llama_index.core.schema import BaseNode, Document, TransformComponent  # noqa: E402
from llama_index.core.storage.docstore import SimpleDocumentStore  # noqa: E402

COLLECTION = "llamaindex"
EMBED_BATCH_SIZE = 32
PIPELINE_DIR = "pipeline"  # docstore persisted here
QDRANT_DIR = "qdrant"


# --- readers: what llama-index-readers-file 0.7.0 would do, on ragline's pinned libraries ---------


class PdfPagesReader(BaseReader):
    """readers-file's PDFReader: one Document per page, `page_label` from the PDF's page labels."""

    def load_data(self, file: Path, extra_info: dict | None = None, **_: Any) -> list[Document]:
        import pypdf

        pdf = pypdf.PdfReader(str(file))
        return [
            Document(text=page.extract_text(), metadata={"page_label": pdf.page_labels[i], "file_name": file.name, **(extra_info or {})})
            for i, page in enumerate(pdf.pages)
        ]


class DocxTextReader(BaseReader):
    """readers-file's DocxReader (docx2txt): the document's paragraphs and table cells as one text."""

    def load_data(self, file: Path, extra_info: dict | None = None, **_: Any) -> list[Document]:
        import docx

        document = docx.Document(str(file))
        lines = [p.text for p in document.paragraphs]
        for table in document.tables:
            lines.extend("\t".join(cell.text for cell in row.cells) for row in table.rows)
        return [Document(text="\n".join(lines), metadata={"file_name": file.name, **(extra_info or {})})]


class PptxSlidesReader(BaseReader):
    """readers-file's PptxReader without image captioning or LLM: one Document per slide,
    `page_label` the slide number, text of its shapes and notes."""

    def load_data(self, file: Path, extra_info: dict | None = None, **_: Any) -> list[Document]:
        import pptx

        docs = []
        for number, slide in enumerate(pptx.Presentation(str(file)).slides, start=1):
            parts = [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame]
            if slide.has_notes_slide:
                parts.append(slide.notes_slide.notes_text_frame.text)
            docs.append(Document(text="\n".join(p for p in parts if p), metadata={"page_label": number, **(extra_info or {})}))
        return docs


class CsvRowsReader(BaseReader):
    """readers-file's PandasCSVReader defaults: the rows, cells joined by ", ", one Document."""

    def load_data(self, file: Path, extra_info: dict | None = None, **_: Any) -> list[Document]:
        import pandas as pd

        rows = pd.read_csv(file).astype(str).apply(", ".join, axis=1).tolist()
        return [Document(text="\n".join(rows), metadata=extra_info or {})]


READERS: dict[str, BaseReader] = {
    ".pdf": PdfPagesReader(),
    ".docx": DocxTextReader(),
    ".pptx": PptxSlidesReader(),
    ".csv": CsvRowsReader(),
}
RAW_TEXT_FORMATS = (".md", ".html", ".txt", ".eml")  # llama-index-core's own plain-text read


# --- model, tokenizer, store -------------------------------------------------------------------


@cache
def embed_model():
    """The bundled MiniLM through LlamaIndex's HuggingFace integration; loaded once per process."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(
        model_name=str(bundled_model_path()),
        max_length=BUNDLED_MODEL_WINDOW,
        embed_batch_size=EMBED_BATCH_SIZE,
        normalize=True,
        device="cpu",
        local_files_only=True,
    )


@cache
def minilm_token_ids():
    """MiniLM's own tokenizer, counting as ragline counts: without [CLS] and [SEP]."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()), local_files_only=True)
    return lambda text: tokenizer.encode(text, add_special_tokens=False, verbose=False)


def _vector_store(work: Path):
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(work / QDRANT_DIR))
    return client, QdrantVectorStore(collection_name=COLLECTION, client=client)


class Timed(TransformComponent):
    """A transformation that adds the seconds its inner transformation took; changes nothing else."""

    inner: TransformComponent
    seconds: float = 0.0

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        start = time.perf_counter()
        try:
            return self.inner(nodes, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


# --- build -------------------------------------------------------------------------------------


def read_corpus(corpus: Path) -> list[Document]:
    """Every file under `corpus` as LlamaIndex Documents carrying `doc_id` and page numbers."""
    corpus = corpus.resolve()

    def file_metadata(path: str) -> dict:
        return {**default_file_metadata_func(path), "doc_id": Path(path).relative_to(corpus).as_posix()}

    reader = SimpleDirectoryReader(
        input_dir=str(corpus), recursive=True, filename_as_id=True, file_extractor=READERS, file_metadata=file_metadata
    )
    documents = reader.load_data()
    for doc in documents:
        label = doc.metadata.get("page_label")
        if label is not None and str(label).isdigit():
            doc.metadata["page_start"] = doc.metadata["page_end"] = int(label)
        # Embed and split the text alone, as ragline does (see the module docstring).
        doc.excluded_embed_metadata_keys = list(doc.metadata)
        doc.excluded_llm_metadata_keys = list(doc.metadata)
    return documents


def build(corpus: Path, work: Path, *, chunk_tokens: int = 250, overlap_tokens: int = 38) -> dict:
    """Ingest `corpus` into the LlamaIndex index under `work` (created, or updated in place).

    Returns counts and seconds: `files` read, `documents` (files, pages, slides), `nodes` embedded
    and written by this run, `nodes_total` in the collection, per-stage seconds and `wall_seconds`.
    """
    start = time.perf_counter()
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    close(work)  # a retriever of this process may hold the embedded store open
    seconds: dict[str, float] = {}

    def stage(name: str, began: float) -> float:
        now = time.perf_counter()
        seconds[name] = round(now - began, 3)
        return now

    t = time.perf_counter()
    splitter = Timed(inner=TokenTextSplitter(chunk_size=chunk_tokens, chunk_overlap=overlap_tokens, tokenizer=minilm_token_ids()))
    embedder = Timed(inner=embed_model())
    t = stage("load_model", t)
    client, vector_store = _vector_store(work)
    pipeline = IngestionPipeline(
        transformations=[splitter, embedder],
        vector_store=vector_store,
        docstore=SimpleDocumentStore(),
        docstore_strategy=DocstoreStrategy.UPSERTS,
        disable_cache=True,
    )
    persist_dir = work / PIPELINE_DIR
    if persist_dir.exists():
        pipeline.load(str(persist_dir))
    t = stage("open_store", t)
    try:
        documents = read_corpus(corpus)
        t = stage("read", t)
        nodes = pipeline.run(documents=documents)
        t = stage("run", t)
        pipeline.persist(str(persist_dir))
        t = stage("persist", t)
        nodes_total = client.count(COLLECTION).count if client.collection_exists(COLLECTION) else 0
    finally:
        client.close()
    seconds["split"] = round(splitter.seconds, 3)
    seconds["embed"] = round(embedder.seconds, 3)
    # What `run` spent outside the two transformations: the docstore's hash checks and the upsert.
    seconds["dedup_and_upsert"] = round(seconds["run"] - splitter.seconds - embedder.seconds, 3)
    files = {doc.metadata["doc_id"] for doc in documents}
    return {
        "files": len(files),
        "unreadable": sorted(_listed_files(corpus) - files),
        "documents": len(documents),
        "nodes": len(nodes),
        "nodes_total": nodes_total,
        "seconds": seconds,
        "wall_seconds": round(time.perf_counter() - start, 3),
    }


def _listed_files(corpus: Path) -> set[str]:
    corpus = corpus.resolve()
    return {
        p.relative_to(corpus).as_posix()
        for p in corpus.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(corpus).parts)
    }


# --- retrieve ----------------------------------------------------------------------------------

_open_indexes: dict[Path, tuple[Any, VectorStoreIndex]] = {}


def _index(work: Path) -> VectorStoreIndex:
    key = Path(work).resolve()
    if key not in _open_indexes:
        client, vector_store = _vector_store(key)
        _open_indexes[key] = (client, VectorStoreIndex.from_vector_store(vector_store, embed_model=embed_model()))
    return _open_indexes[key][1]


def retrieve(work: Path, question: str, k: int) -> list[dict]:
    """The top `k` nodes for `question` from the index built under `work`, best first."""
    hits = _index(work).as_retriever(similarity_top_k=k).retrieve(question)
    return [
        {
            "doc_id": hit.node.metadata["doc_id"],
            "page_start": hit.node.metadata.get("page_start"),
            "page_end": hit.node.metadata.get("page_end"),
            "text": hit.node.get_content(),
            "score": hit.score,
        }
        for hit in hits
    ]


def close(work: Path) -> None:
    """Release the embedded store opened by `retrieve` for `work` (qdrant's local mode allows one client per folder)."""
    opened = _open_indexes.pop(Path(work).resolve(), None)
    if opened is not None:
        opened[0].close()


@atexit.register
def _close_all() -> None:  # before interpreter shutdown, where qdrant-client's own __del__ fails noisily
    for work in list(_open_indexes):
        close(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--chunk-tokens", type=int, default=250)
    parser.add_argument("--overlap-tokens", type=int, default=38)
    args = parser.parse_args()
    result = build(args.corpus, args.work, chunk_tokens=args.chunk_tokens, overlap_tokens=args.overlap_tokens)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
