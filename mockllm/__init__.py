"""mockllm: a deterministic OpenAI-compatible streaming provider with a request ledger."""
