// What the harness (or a person) gives a page in its URL: where the server is, which model to
// ask for, and optionally the connection id. Nothing is fetched from anywhere else.
const params = new URLSearchParams(window.location.search);

export const WS_BASE = (params.get("ws") || `ws://${window.location.host}`).replace(/\/$/, "");
export const MODEL = params.get("model") || undefined;
export const GIVEN_ID = params.get("id");
// The tutorial hook only: "skip" gives useWebSocket a filter that keeps every message out of
// lastMessage (the library's documented way to avoid a render per message).
export const FILTER = params.get("filter");
