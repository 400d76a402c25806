// The chat as both clients draw it. The data-testid attributes are what the harness reads:
// the history saved so far, the message being streamed, the connection's state.
import { useState } from "react";

export function ChatView({ client, connection, history, streaming, busy, error, onSend }) {
  const [text, setText] = useState("");
  const submit = (event) => {
    event.preventDefault();
    if (!text) return;
    onSend(text);
    setText("");
  };
  return (
    <main data-testid="chat" data-client={client}>
      <h1>{client === "tutorial" ? "Tutorial hook" : "Protocol v1 client"}</h1>
      <p data-testid="status" data-state={connection}>
        connection: {connection}
      </p>
      <ol data-testid="history">
        {history.map((m, i) => (
          <li key={i} data-testid="message" data-role={m.role}>
            {m.content}
          </li>
        ))}
      </ol>
      <div data-testid="streaming" data-busy={busy ? "true" : "false"}>
        {streaming}
      </div>
      {error ? <p data-testid="error">{error}</p> : null}
      <form onSubmit={submit}>
        <input
          data-testid="prompt"
          value={text}
          onChange={(e) => setText(e.target.value)}
          placeholder="Ask something"
        />
        <button data-testid="send" type="submit" disabled={busy || connection !== "open"}>
          Send
        </button>
      </form>
    </main>
  );
}
