// The tutorial's frontend, written as the common tutorial writes it, flaws included (like
// reference_server/naive.py on the server side). Do not copy it. The flaws, on purpose:
//
// 1. The final message is built from `currentMessage` as the handler captured it at render
//    time, not from the functional update: tokens that arrive in the same burst as the end,
//    before React renders again, are missing from the saved message. react-use-websocket 4.x
//    renders after every message (it sets lastMessage in flushSync), which hides this; with
//    `?filter=skip` the messages stay out of lastMessage, React renders in batches, and the
//    tail is lost (docs/scenarios.md measures when).
// 2. The connection id is hard-coded (every tab of every user is "user-123"), unless the
//    page's URL gives one.
// 3. The whole history goes with every message; on a reconnect (after 3 s, forever) nothing
//    resumes: the answer that was streaming is lost or never ends.
import { useCallback, useState } from "react";
import { createRoot } from "react-dom/client";
import useWebSocket, { ReadyState } from "react-use-websocket";
import { ChatView } from "./ChatView.jsx";
import { FILTER, GIVEN_ID, MODEL, WS_BASE } from "./params.js";

const CONNECTION_ID = GIVEN_ID || "user-123";
const END = "[END]";

function useChatSocket() {
  const [messages, setMessages] = useState([]);
  const [currentMessage, setCurrentMessage] = useState("");
  const [isStreaming, setIsStreaming] = useState(false);
  const [error, setError] = useState(null);

  const finish = () => {
    // Flaw 1: `currentMessage` is this render's value.
    setMessages((prev) => [...prev, { role: "assistant", content: currentMessage }]);
    setCurrentMessage("");
    setIsStreaming(false);
  };

  const { sendJsonMessage, readyState } = useWebSocket(`${WS_BASE}/ws/chat/${CONNECTION_ID}`, {
    onMessage: (event) => {
      const data = JSON.parse(event.data);
      if (data.type === "token" && data.content === END) {
        finish();
      } else if (data.type === "token") {
        setCurrentMessage((prev) => prev + data.content);
      } else if (data.type === "end") {
        finish();
      } else if (data.type === "error") {
        setError(data.message);
        setIsStreaming(false);
      }
    },
    shouldReconnect: () => true,
    reconnectInterval: 3000,
    ...(FILTER === "skip" ? { filter: () => false } : {}),
  });

  const sendMessage = useCallback(
    (text) => {
      const next = [...messages, { role: "user", content: text }];
      setMessages(next);
      setIsStreaming(true);
      setError(null);
      sendJsonMessage({ messages: next, model: MODEL });
    },
    [messages, sendJsonMessage],
  );

  return { messages, currentMessage, isStreaming, error, readyState, sendMessage };
}

const STATES = {
  [ReadyState.CONNECTING]: "connecting",
  [ReadyState.OPEN]: "open",
  [ReadyState.CLOSING]: "closing",
  [ReadyState.CLOSED]: "closed",
  [ReadyState.UNINSTANTIATED]: "uninstantiated",
};

function App() {
  const chat = useChatSocket();
  return (
    <ChatView
      client="tutorial"
      connection={STATES[chat.readyState]}
      history={chat.messages}
      streaming={chat.currentMessage}
      busy={chat.isStreaming}
      error={chat.error}
      onSend={chat.sendMessage}
    />
  );
}

createRoot(document.getElementById("root")).render(<App />);
