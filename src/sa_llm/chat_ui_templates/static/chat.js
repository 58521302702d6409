// The live chat page: follows /chats/{id}/events (server-sent events) and applies each event
// once, strictly in order. Written for sa_llm's chat UI; no library, no build step.
//
// Every event carries `seq` (its place in the chat's log) and `prev` (the seq of the event
// sent before it on the same connection). An event is applied when its `prev` is the last
// applied seq; one that arrives early waits in `pending`; one already applied is dropped.
// Streamed text carries `offset` (where it starts in the message, in characters), so text the
// page already shows is never appended twice. On any error the script reconnects by itself
// with `?after=<last applied seq>`, also when the server answered with an error status, which
// makes a plain EventSource give up for good.
(() => {
  "use strict";
  const root = document.querySelector("[data-chat]");
  if (!root) return;
  const messages = document.getElementById("messages");
  const form = document.getElementById("new-message");
  const formError = document.getElementById("form-error");
  const connection = document.getElementById("connection");
  const heartbeatMs = Number(root.dataset.heartbeat || 15) * 1000;
  const state = {
    lastApplied: Number(root.dataset.lastSeq || 0),
    applied: [], // seqs in the order applied (read by tests)
    paints: [], // [seq, time the delta was painted, text length] (read by the benchmark)
    reconnects: 0,
  };
  window.saLlmChat = state;
  const pending = new Map(); // prev -> event that waits for it
  let source = null;
  let delay = 500;
  let timer = null;
  let watchdog = null;

  // Text lengths in code points, as the server counts them (emoji are one character).
  const length = (text) => { let n = 0; for (const _ of text) n += 1; return n; };
  const tail = (text, from) => Array.from(text).slice(from).join("");

  function element(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function setRunning(running) { root.dataset.running = running ? "1" : "0"; }

  function clearTurnEnd() { document.getElementById("turn-end")?.remove(); }

  function upsert(event) {
    if (!event.html) return;
    const fresh = element(event.html);
    const old = document.getElementById(fresh.id);
    if (old) old.replaceWith(fresh); else messages.append(fresh);
  }

  const apply = {
    reset(event) { messages.innerHTML = event.html; },
    "turn.started"() { clearTurnEnd(); setRunning(true); },
    "turn.ended"(event) {
      setRunning(false);
      if (event.html) { clearTurnEnd(); messages.append(element(event.html)); }
    },
    "message.created"(event) {
      // The page may show it already (rendered after the position it resumed from).
      if (!document.getElementById("message-" + event.message_id)) upsert(event);
    },
    "message.delta"(event) {
      const bubble = document.getElementById("message-" + event.message_id);
      const content = bubble?.querySelector(".content.streaming");
      if (!content) return; // completed meanwhile: the final text replaced it
      const shown = Number(bubble.dataset.length || 0);
      const end = event.offset + length(event.text);
      if (end <= shown) return; // already shown
      if (event.offset > shown) { reconnect(true); return; } // a gap: start over from a reset
      content.append(document.createTextNode(tail(event.text, shown - event.offset)));
      bubble.dataset.length = String(end);
      const seq = event.seq;
      requestAnimationFrame(() => state.paints.push([seq, performance.timeOrigin + performance.now(), end]));
    },
    "message.completed": upsert,
    "message.status": upsert,
    "message.deleted"(event) { document.getElementById("message-" + event.message_id)?.remove(); },
  };

  function applyOne(event) {
    const handler = apply[event.kind];
    if (handler) handler(event);
    state.lastApplied = event.seq;
    state.applied.push(event.seq);
  }

  function receive(message) {
    armWatchdog();
    delay = 500;
    connection.hidden = true;
    const event = JSON.parse(message.data);
    if (event.kind !== "reset" && event.seq <= state.lastApplied) return; // a duplicate
    if (event.prev !== null && event.prev > state.lastApplied) { pending.set(event.prev, event); return; }
    applyOne(event);
    for (let next = pending.get(state.lastApplied); next; next = pending.get(state.lastApplied)) {
      pending.delete(state.lastApplied);
      if (next.seq > state.lastApplied || next.kind === "reset") applyOne(next);
    }
    for (const prev of pending.keys()) if (prev < state.lastApplied) pending.delete(prev);
  }

  function connect(fromScratch) {
    const url = new URL(root.dataset.events, location.href);
    if (!fromScratch) url.searchParams.set("after", String(state.lastApplied));
    pending.clear();
    source = new EventSource(url);
    source.onmessage = receive;
    source.addEventListener("ping", armWatchdog);
    source.addEventListener("hello", armWatchdog);
    source.onerror = () => reconnect(false);
    armWatchdog();
  }

  function reconnect(fromScratch) {
    // Our own retries: a plain EventSource stops for good after a non-200 answer.
    if (source) { source.close(); source = null; }
    clearTimeout(timer);
    clearTimeout(watchdog);
    connection.hidden = false;
    state.reconnects += 1;
    const wait = delay * (0.8 + Math.random() * 0.4);
    delay = Math.min(delay * 2, 5000);
    timer = setTimeout(() => connect(fromScratch), wait);
  }

  function armWatchdog() {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => reconnect(false), heartbeatMs * 2.5); // a silent connection
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST", body, headers: { "X-Requested-With": "fetch" }, credentials: "same-origin",
    });
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
      throw new Error(detail);
    }
  }

  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const stop = submit.submitter && submit.submitter.id === "stop";
    const textarea = form.elements.content;
    formError.hidden = true;
    try {
      if (stop) {
        await post(submit.submitter.formAction, new FormData());
      } else {
        if (!textarea.value.trim()) return;
        const body = new FormData(form);
        textarea.value = ""; // cleared at once; the message arrives as an event
        await post(form.action, body);
      }
    } catch (error) {
      formError.textContent = error.message;
      formError.hidden = false;
    }
  });

  form.elements.content.addEventListener("keydown", (key) => {
    if (key.key === "Enter" && !key.shiftKey) { key.preventDefault(); form.requestSubmit(); }
  });

  messages.addEventListener("submit", async (submit) => { // the Retry button of an error
    if (!submit.target.classList.contains("retry")) return;
    submit.preventDefault();
    clearTurnEnd();
    try { await post(submit.target.action, new FormData()); } catch (error) {
      formError.textContent = error.message;
      formError.hidden = false;
    }
  });

  connect(false);
})();
