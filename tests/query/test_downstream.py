"""LlamaIndex and LangChain read a collection ragline built, with the settings docs/downstream.md gives.

The collection is built by ragline's pipeline (real MiniLM, embedded Qdrant); ragline's store is
closed, and the same folder is opened with a plain QdrantClient, as a downstream app would.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from qdrant_client import QdrantClient

from connectors.local import LocalFolderConnector
from ragline import parsers
from ragline.ledger import Ledger
from ragline.pipeline import SyncOptions, sync_source
from stores.qdrant import QdrantStore

pytestmark = pytest.mark.model

COLLECTION = "handbook"
FILES = {
    "hr/leave.md": "# Annual leave\n\nEmployees get 25 days of annual leave each year. Unused days expire in March.",
    "facilities/parking.txt": "Staff parking is free in the north car park after 6 pm. Bicycles go in the basement.",
    "it/laptops.md": "# Laptops\n\nEvery laptop disk is encrypted. Report a lost laptop to the service desk at once.",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory, embedder, chunker) -> dict:
    """Build the collection with ragline, close it, and return where it is and what it holds."""
    root = tmp_path_factory.mktemp("corpus") / "handbook"
    for doc_id, text in FILES.items():
        (root / doc_id).parent.mkdir(parents=True, exist_ok=True)
        (root / doc_id).write_text(text, encoding="utf-8")
    data = tmp_path_factory.mktemp("data")
    store = QdrantStore(path=data / "qdrant", collection=COLLECTION)
    ledger = Ledger(f"sqlite:///{data / 'ledger.db'}")
    try:
        report = sync_source(LocalFolderConnector(root, name="handbook", accept=parsers.is_supported), store=store,
                             ledger=ledger, embedder=embedder, chunker=chunker, options=SyncOptions())
        assert report.status == "ok" and report.added == 3
        chunks = {payload["doc_id"]: payload for _, payload in store.iter_points()}
    finally:
        store.close()  # embedded Qdrant locks its folder: the downstream client opens it afterwards
        ledger.close()
    assert set(chunks) == set(FILES)  # each file is one chunk: its text is the document's
    return {"path": data / "qdrant", "chunks": chunks}


@pytest.fixture
def client(built):
    c = QdrantClient(path=str(built["path"]))
    yield c
    c.close()


# -- LlamaIndex ---------------------------------------------------------------------------------------

def test_llamaindex_vector_store_query(built, client, embedder):
    from llama_index.core.vector_stores import VectorStoreQuery
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    store = QdrantVectorStore(client=client, collection_name=COLLECTION, text_key="text")
    query = VectorStoreQuery(query_embedding=embedder.embed(["where can staff park"])[0].tolist(),
                             similarity_top_k=2)
    result = store.query(query)
    top = result.nodes[0]
    expected = built["chunks"]["facilities/parking.txt"]
    assert top.get_content() == expected["text"]
    assert {k: top.metadata[k] for k in ("source", "doc_id", "uri", "page_start", "doc_type")} == {
        "source": "handbook", "doc_id": "facilities/parking.txt", "uri": expected["uri"], "page_start": 1,
        "doc_type": "txt"}
    assert "text" not in top.metadata  # the text is the node's content, not repeated as metadata
    assert result.similarities[0] > result.similarities[1]


def test_llamaindex_retriever_with_an_embed_model_adapter(built, client, embedder):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    class RaglineEmbedding(BaseEmbedding):
        """ragline's embedder behind LlamaIndex's embedding interface (same model as the collection)."""

        def _get_query_embedding(self, query: str) -> list[float]:
            return embedder.embed([query])[0].tolist()

        def _get_text_embedding(self, text: str) -> list[float]:
            return embedder.embed([text])[0].tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

    index = VectorStoreIndex.from_vector_store(
        QdrantVectorStore(client=client, collection_name=COLLECTION, text_key="text"),
        embed_model=RaglineEmbedding(model_name=embedder.model_name),
    )
    [hit] = index.as_retriever(similarity_top_k=1).retrieve("how many days of annual leave")
    assert hit.node.get_content() == built["chunks"]["hr/leave.md"]["text"]
    assert hit.node.metadata["doc_id"] == "hr/leave.md" and hit.node.metadata["path_prefixes"] == ["hr"]


# -- LangChain ----------------------------------------------------------------------------------------

def langchain_embeddings(embedder):
    from langchain_core.embeddings import Embeddings

    class RaglineEmbeddings(Embeddings):
        """ragline's embedder behind LangChain's Embeddings interface."""

        def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
            return embedder.embed(list(texts)).tolist()

        def embed_query(self, text: str) -> list[float]:
            return embedder.embed([text])[0].tolist()

    return RaglineEmbeddings()


def test_langchain_similarity_search(built, client, embedder):
    from langchain_qdrant import QdrantVectorStore

    store = QdrantVectorStore(
        client=client,
        collection_name=COLLECTION,
        embedding=langchain_embeddings(embedder),
        content_payload_key="text",
        metadata_payload_key="metadata",
        vector_name="",  # ragline's collections have one unnamed vector (the default)
    )
    [doc] = store.similarity_search("what if I lose my laptop", k=1)
    expected = built["chunks"]["it/laptops.md"]
    assert doc.page_content == expected["text"]
    assert {k: doc.metadata[k] for k in ("source", "doc_id", "uri", "page_start", "title", "doc_type", "chunk_index")} == {
        "source": "handbook", "doc_id": "it/laptops.md", "uri": expected["uri"], "page_start": 1,
        "title": expected["title"], "doc_type": "md", "chunk_index": 0}
    assert doc.metadata["_collection_name"] == COLLECTION  # LangChain adds the point's id and collection

    scored = store.similarity_search_with_score("bicycle storage", k=3)
    assert scored[0][0].metadata["doc_id"] == "facilities/parking.txt"
    assert [s for _, s in scored] == sorted((s for _, s in scored), reverse=True)


def test_langchain_filter_on_the_metadata_object(built, client, embedder):
    """LangChain filters are Qdrant filters on payload keys: `metadata.<field>` reaches the nested copy."""
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import models

    store = QdrantVectorStore(client=client, collection_name=COLLECTION, embedding=langchain_embeddings(embedder),
                              content_payload_key="text", metadata_payload_key="metadata")
    only_hr = models.Filter(must=[models.FieldCondition(key="metadata.doc_id", match=models.MatchValue(value="hr/leave.md"))])
    [doc] = store.similarity_search("where can staff park", k=3, filter=only_hr)
    assert doc.metadata["doc_id"] == "hr/leave.md"
