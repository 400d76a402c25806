// A chat backend on the Vercel AI SDK (ai 6) the way its docs show a Node/Express server for
// `useChat`: POST /api/chat takes what ai 6's DefaultChatTransport sends,
//   {"id": "...", "messages": [UIMessage, ...], "trigger": "submit-message", "messageId": ...}
// with UIMessage = {"id", "role", "parts": [{"type": "text", "text": "..."}]}, and answers with
// the UI message stream (SSE: `data: {"type": "text-delta", "id": ..., "delta": ...}\n\n` ...,
// then `data: [DONE]\n\n`; header `x-vercel-ai-ui-message-stream: v1`).
//
// The provider is OpenAI-compatible at PROVIDER_URL (ending in /v1). `.chat(model)` calls
// POST /v1/chat/completions; plain `openai(model)`, what the AI SDK's docs write since ai 5,
// calls POST /v1/responses: `--api responses` serves that way.
//
//   node ai_sdk_ui.mjs --port 0 --provider-url http://127.0.0.1:9000/v1 [--api chat|responses]
//   (or PORT / PROVIDER_URL in the environment; port 0 = any free port)
//
// Once listening it prints `ai_sdk_ui listening on http://127.0.0.1:<port>`.
import { parseArgs } from 'node:util';

import { createOpenAI } from '@ai-sdk/openai';
import { convertToModelMessages, streamText } from 'ai';
import express from 'express';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'provider-url': { type: 'string' },
    api: { type: 'string', default: 'chat' },
  },
});
const port = Number(args.port ?? process.env.PORT ?? 0);
const providerUrl = args['provider-url'] ?? process.env.PROVIDER_URL;
if (!providerUrl || !Number.isInteger(port) || !['chat', 'responses'].includes(args.api)) {
  console.error(
    'usage: node ai_sdk_ui.mjs --port PORT --provider-url http://HOST:PORT/v1 [--api chat|responses]',
  );
  process.exit(2);
}

const openai = createOpenAI({ baseURL: providerUrl, apiKey: 'sk-test' });

const app = express();
app.use(express.json());

app.post('/api/chat', async (req, res) => {
  const { messages } = req.body;

  const result = streamText({
    model: args.api === 'responses' ? openai('gpt-4o-mini') : openai.chat('gpt-4o-mini'),
    messages: await convertToModelMessages(messages),
  });

  result.pipeUIMessageStreamToResponse(res);
});

const server = app.listen(port, '127.0.0.1', () => {
  console.log(`ai_sdk_ui listening on http://127.0.0.1:${server.address().port}`);
});

