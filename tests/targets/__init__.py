"""Servers we did not write, or wrote in the shapes people publish, for the harness to judge.

Each launcher module here starts its servers as real processes on 127.0.0.1 (port 0 or a free
port), pointed at a provider URL (the mock, or the fault proxy in front of it), and stops them
when its async context manager exits:

- ``pyservers``: small FastAPI chat backends written the way tutorials and blog posts write them
  (plain-text WebSocket, SSE on ``GET ?prompt=``, the AI SDK data stream, a synchronous SDK call);
- ``node``: Node servers on the Vercel AI SDK and on Express with the ``openai`` package;
- ``litellm``: the LiteLLM proxy, an OpenAI-compatible gateway.

Their flaws are real and on purpose: the scenarios must find them and name what the server did.
"""
