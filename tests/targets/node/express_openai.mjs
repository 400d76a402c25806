// A chat backend written the way many blog posts write one: Express 4, the `openai` npm
// package pointed at a base URL, `stream: true`, and every delta written out as an SSE event
//   data: {"content":"<delta>"}\n\n        ... then   data: [DONE]\n\n
// POST /api/chat takes {"messages": [{"role": "user", "content": "..."}]}; the model is
// hard-coded (gpt-3.5-turbo).
//
// Two flaws are here ON PURPOSE, because the harness must catch them:
//
// 1. No try/catch around the stream inside an `async` route handler. Express 4 does not look
//    at the promise a handler returns, so when the provider drops the connection mid-stream
//    the `for await` throws, the promise rejects, nobody handles it, and Node 20 (whose
//    default is --unhandled-rejections=throw) exits the whole process with code 1: every other
//    user's stream dies with it. (Express 5 would pass the rejection to its error handler.)
// 2. No `req.on('close')` / AbortController: when the client leaves, the loop goes on reading
//    the provider's stream to the end, writing into a closed response, and the provider
//    request (and its cost) keeps running.
//
//   node express_openai.mjs --port 0 --provider-url http://127.0.0.1:9000/v1
//   (or PORT / PROVIDER_URL in the environment; port 0 = any free port)
//
// Once listening it prints `express_openai listening on http://127.0.0.1:<port>`.
import { parseArgs } from 'node:util';

import express from 'express';
import OpenAI from 'openai';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'provider-url': { type: 'string' },
  },
});
const port = Number(args.port ?? process.env.PORT ?? 0);
const providerUrl = args['provider-url'] ?? process.env.PROVIDER_URL;
if (!providerUrl || !Number.isInteger(port)) {
  console.error('usage: node express_openai.mjs --port PORT --provider-url http://HOST:PORT/v1');
  process.exit(2);
}

const openai = new OpenAI({ baseURL: providerUrl, apiKey: 'sk-test' });

const app = express();
app.use(express.json());

app.post('/api/chat', async (req, res) => {
  const { messages } = req.body;

  res.setHeader('Content-Type', 'text/event-stream');
  res.setHeader('Cache-Control', 'no-cache');
  res.setHeader('Connection', 'keep-alive');
  res.flushHeaders();

  // FLAW 1: no try/catch; FLAW 2: no req.on('close') (see the top of this file).
  const stream = await openai.chat.completions.create({
    model: 'gpt-3.5-turbo',
    messages,
    stream: true,
  });

  for await (const chunk of stream) {
    const content = chunk.choices[0]?.delta?.content || '';
    if (content) {
      res.write(`data: ${JSON.stringify({ content })}\n\n`);
    }
  }

  res.write('data: [DONE]\n\n');
  res.end();
});

const server = app.listen(port, '127.0.0.1', () => {
  console.log(`express_openai listening on http://127.0.0.1:${server.address().port}`);
});
