"""A tiny llama-architecture model in GGUF, written at test time with llama.cpp's own writer
(the `gguf` package), for a real llama.cpp server to load: tests/test_llama_server.py.

Two layers, 64-wide, 4 heads, f32 weights drawn from a seeded generator, and a SentencePiece
vocabulary in the metadata: ``<unk>``, ``<s>``, ``</s>``, the 256 byte tokens (so any text
tokenizes), printable ASCII and a few word pieces. Its answers are gibberish, but everything
around them is the server's own: the chat template, tokenization and usage counts, sampling,
grammars, the context window and its errors.

To keep answers short and deterministic enough for tests, every token embedding carries a
large constant in its first dimension (the attention and feed-forward weights are small, so
it survives to the output), and the output matrix's first column turns it into a per-token
bias: ``}`` is the likeliest token, the end of sequence next, the rest far behind. So a
JSON grammar closes at once (``{}``) and free text ends after a few dozen tokens.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_tiny_llama"]

EMBED, LAYERS, HEADS, FEED_FORWARD = 64, 2, 4, 128
_WORDS = ("▁the", "▁and", "▁invoice", "▁supplier", "▁total", "▁ok", "er", "in", "on", "at", "▁a")


def _vocabulary() -> tuple[list[str], list[float], list[int]]:
    import gguf

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    scores = [0.0] * len(tokens)
    pieces = ["▁"] + [chr(c) for c in range(0x21, 0x7F)] + list(_WORDS)
    for rank, piece in enumerate(pieces):
        tokens.append(piece)
        types.append(gguf.TokenType.NORMAL)
        scores.append(-float(rank) if len(piece) > 1 else -1000.0 - rank)
    return tokens, scores, [int(t) for t in types]


def write_tiny_llama(path: Path, *, seed: int = 29, context: int = 4096) -> Path:
    """Write the model to `path` (about 0.5 MB) and return it."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocabulary()
    vocab = len(tokens)

    def small(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("orchestrate-tiny-llama")
    writer.add_context_length(context)
    writer.add_embedding_length(EMBED)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(EMBED // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)

    embeddings = small(vocab, EMBED)
    embeddings[:, 0] = 1.0  # the constant that carries the output bias
    output = small(vocab, EMBED)
    output[:, 0] = 0.0
    output[tokens.index("}"), 0] = 0.9
    output[tokens.index("</s>"), 0] = 0.45
    writer.add_tensor("token_embd.weight", embeddings)
    for layer in range(LAYERS):
        block = f"blk.{layer}"
        writer.add_tensor(f"{block}.attn_norm.weight", np.ones(EMBED, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{block}.{name}.weight", small(EMBED, EMBED))
        writer.add_tensor(f"{block}.ffn_norm.weight", np.ones(EMBED, dtype=np.float32))
        writer.add_tensor(f"{block}.ffn_gate.weight", small(FEED_FORWARD, EMBED))
        writer.add_tensor(f"{block}.ffn_up.weight", small(FEED_FORWARD, EMBED))
        writer.add_tensor(f"{block}.ffn_down.weight", small(EMBED, FEED_FORWARD))
    writer.add_tensor("output_norm.weight", np.ones(EMBED, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
