// A browser client of protocol v1 (docs/protocol.md), written to be correct:
//
// - its own connection id per tab (the URL's, else a random one), a chat id per message;
// - tokens kept by index in a ref, outside React's render cycle: the saved message is built
//   from every token received, whatever React has drawn yet;
// - the end of an answer is the explicit `end` message;
// - a lost connection is opened again at once (then with back-off), and the stream resumed
//   after the last index seen with its resume token; a server that no longer knows the
//   stream (a restart) gets the chat again, and indexes already shown are not shown twice.
import { useCallback, useEffect, useRef, useState } from "react";
import { createRoot } from "react-dom/client";
import { ChatView } from "./ChatView.jsx";
import { GIVEN_ID, MODEL, WS_BASE } from "./params.js";

const SUBPROTOCOL = "llm-stream.v1";
const CLIENT_ID = GIVEN_ID || randomId();
const BACKOFF_MS = [0, 250, 500, 1000, 2000];

function randomId() {
  if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
  return `tab-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;
}

function useV1Chat() {
  const [history, setHistory] = useState([]);
  const [streaming, setStreaming] = useState("");
  const [busy, setBusy] = useState(false);
  const [connection, setConnection] = useState("connecting");
  const [error, setError] = useState(null);
  const socket = useRef(null);
  const session = useRef({ resumeToken: null });
  // The answer being streamed: {id, messages, streamId, resumeToken, lastIndex, text}.
  const stream = useRef(null);
  const sent = useRef(0);
  const historyRef = useRef([]);
  const attempts = useRef(0);

  const send = (frame) => socket.current && socket.current.send(JSON.stringify(frame));

  const saveAnswer = (content) => {
    historyRef.current = [...historyRef.current, { role: "assistant", content }];
    setHistory(historyRef.current);
    setStreaming("");
    setBusy(false);
    stream.current = null;
  };

  const continueStream = () => {
    const s = stream.current;
    if (!s) return;
    if (s.streamId && s.resumeToken) {
      send({ type: "resume", stream_id: s.streamId, after: s.lastIndex, resume_token: s.resumeToken });
    } else {
      send({
        type: "chat", id: s.id, messages: s.messages, model: MODEL,
        resume_token: session.current.resumeToken, after: s.lastIndex,
      });
    }
  };

  const handle = (data) => {
    const s = stream.current;
    switch (data.type) {
      case "hello":
        session.current.resumeToken = data.resume_token;
        attempts.current = 0;
        setConnection("open");
        if (s) continueStream();
        break;
      case "ping":
        send({ type: "pong", ts: data.ts });
        break;
      case "start":
        if (s && data.id === s.id) {
          s.streamId = data.stream_id;
          s.resumeToken = data.resume_token;
        }
        break;
      case "token":
        // A token at or below the last index is one already shown (a replay, or the start
        // of a new generation after a restart): it is not shown twice.
        if (s && data.id === s.id && data.index > s.lastIndex) {
          s.lastIndex = data.index;
          s.text += data.content;
          setStreaming(s.text);
        }
        break;
      case "end":
        if (s && data.id === s.id) saveAnswer(s.text);
        break;
      case "error":
        if (!s) {
          setError(`${data.code}: ${data.message}`);
        } else if (data.code === "unknown_stream" || data.code === "stream_expired") {
          // The server no longer has the stream: ask again (a new generation).
          s.streamId = null;
          s.resumeToken = null;
          send({ type: "chat", id: s.id, messages: s.messages, model: MODEL });
        } else if (data.id === s.id && data.code !== "server_shutdown") {
          setError(`${data.code}: ${data.message}`);
          setBusy(false);
          stream.current = null;
        }
        // server_shutdown announces the close (1001): the reconnect continues the stream.
        break;
      default:
        break;
    }
  };

  const connect = useCallback(() => {
    setConnection("connecting");
    const ws = new WebSocket(`${WS_BASE}/ws/chat/${encodeURIComponent(CLIENT_ID)}`, SUBPROTOCOL);
    socket.current = ws;
    ws.onmessage = (event) => handle(JSON.parse(event.data));
    ws.onclose = () => {
      if (socket.current !== ws) return;
      setConnection("closed");
      const wait = BACKOFF_MS[Math.min(attempts.current, BACKOFF_MS.length - 1)];
      attempts.current += 1;
      setTimeout(connect, wait);
    };
  }, []);

  useEffect(() => {
    connect();
    return () => {
      const ws = socket.current;
      socket.current = null;
      if (ws) ws.close();
    };
  }, [connect]);

  const sendMessage = (text) => {
    historyRef.current = [...historyRef.current, { role: "user", content: text }];
    setHistory(historyRef.current);
    sent.current += 1;
    stream.current = {
      id: `m${sent.current}`,
      messages: historyRef.current,
      streamId: null,
      resumeToken: null,
      lastIndex: -1,
      text: "",
    };
    setBusy(true);
    setError(null);
    send({ type: "chat", id: stream.current.id, messages: historyRef.current, model: MODEL });
  };

  return { history, streaming, busy, connection, error, sendMessage };
}

function App() {
  const chat = useV1Chat();
  return (
    <ChatView
      client="v1"
      connection={chat.connection}
      history={chat.history}
      streaming={chat.streaming}
      busy={chat.busy}
      error={chat.error}
      onSend={chat.sendMessage}
    />
  );
}

createRoot(document.getElementById("root")).render(<App />);
