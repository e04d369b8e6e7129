// sealpost web: keeps the server-rendered pages live. Everything shown is
// rendered by the server's templates (text escaped there); this script only
// moves those pieces into place, counts characters with SealpostRules, and
// raises notifications. No framework, no build step.
"use strict";
(function () {
  const root = document.documentElement;
  const view = root.dataset.view;
  const peer = root.dataset.peer || "";
  const Rules = window.SealpostRules;
  const json = { Accept: "application/json" };

  // ---- times and day separators, in the browser's time zone and language
  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  const dateFmt = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
  const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long", year: "numeric" });
  const dayKey = (d) => d.getFullYear() + "-" + d.getMonth() + "-" + d.getDate();
  function dayLabel(d) {
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (dayKey(d) === dayKey(today)) return "Today";
    if (dayKey(d) === dayKey(yesterday)) return "Yesterday";
    return dayFmt.format(d);
  }
  function decorate(scope) {
    for (const t of scope.querySelectorAll("time[datetime]")) {
      const d = new Date(t.dateTime);
      if (isNaN(d)) continue;
      const sameDay = dayKey(d) === dayKey(new Date());
      t.textContent = t.dataset.format === "short" && !sameDay ? dateFmt.format(d) : timeFmt.format(d);
      t.title = dayFmt.format(d) + " " + timeFmt.format(d);
    }
  }
  function separators(list) {
    for (const s of list.querySelectorAll("li.day")) s.remove();
    let last = "";
    for (const li of list.querySelectorAll("li.msg")) {
      const d = new Date(Number(li.dataset.at));
      if (dayKey(d) === last) continue;
      last = dayKey(d);
      const sep = document.createElement("li");
      sep.className = "day";
      const h = document.createElement("h2");
      h.textContent = dayLabel(d);
      sep.append(h);
      list.insertBefore(sep, li);
    }
  }

  // ---- the registration indicator
  const conn = document.getElementById("conn");
  function setConn(state, detail) {
    if (!conn) return;
    const words = {
      on: "Registered with the server",
      off: "Not registered with the server",
      lost: "Lost contact with sealpost web; reconnecting…",
      ended: "This sealpost web has stopped or restarted: open the address it printed",
    };
    conn.className = "conn " + state;
    conn.querySelector(".conn-text").textContent = words[state];
    conn.title = detail || "";
  }

  // ---- the conversation
  const scroller = document.getElementById("scroller");
  const atBottom = () => !scroller || scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  const toBottom = () => { if (scroller) scroller.scrollTop = scroller.scrollHeight; };
  function messagesList() { return document.getElementById("messages"); }
  function fromHTML(html) {
    const t = document.createElement("template");
    t.innerHTML = html; // rendered and escaped by the server's html/template
    return t.content.firstElementChild;
  }
  const rank = { sending: 0, enqueued: 1, delivered: 2, error: 2 };
  // placeBubble shows one message as of one event: it replaces the bubble
  // of the same id, or goes where the core orders it (by its time, after
  // those of the same time).
  function placeBubble(e) {
    const list = messagesList();
    if (!list) return;
    const el = fromHTML(e.html);
    if (!el) return;
    const stay = atBottom();
    const old = document.getElementById(el.id);
    if (old) {
      const from = old.dataset.status, to = el.dataset.status;
      // A late event never takes a bubble back (an earlier redraw may
      // already show a later status); a retry may take Error to Sending.
      if (from && to && rank[to] < rank[from] && !(from === "error" && to === "sending")) return;
      old.replaceWith(el);
    } else {
      document.getElementById("no-messages")?.remove();
      const at = Number(el.dataset.at);
      const msgs = [...list.querySelectorAll("li.msg")];
      const after = msgs.findLast((m) => Number(m.dataset.at) <= at);
      if (after) after.after(el);
      else list.prepend(el);
    }
    decorate(el);
    separators(list);
    if (stay) toBottom();
  }
  async function refreshConversation() {
    const list = messagesList();
    if (!list || !peer) return;
    const r = await fetch("/fragment/c/" + encodeURIComponent(peer), { headers: json });
    if (!r.ok) return;
    const stay = atBottom();
    const fresh = fromHTML(await r.text());
    if (!fresh) return;
    list.replaceWith(fresh);
    decorate(fresh);
    separators(fresh);
    if (stay) toBottom();
  }

  // ---- the contact list
  let contactsTimer = null;
  function scheduleContacts() {
    clearTimeout(contactsTimer);
    contactsTimer = setTimeout(refreshContacts, 100);
  }
  async function refreshContacts() {
    const box = document.getElementById("contacts");
    if (!box) return;
    const r = await fetch("/fragment/contacts?current=" + encodeURIComponent(peer), { headers: json }).catch(() => null);
    if (!r || !r.ok) return;
    box.innerHTML = await r.text(); // rendered and escaped by the server
    decorate(box);
  }

  // ---- read marks: a conversation is read when its page is seen
  const seen = () => document.visibilityState === "visible" && document.hasFocus();
  async function markRead() {
    if (view !== "conversation" || !seen()) return;
    await fetch("/c/" + encodeURIComponent(peer) + "/read", { method: "POST", headers: json }).catch(() => null);
    scheduleContacts();
  }
  window.addEventListener("focus", markRead);
  document.addEventListener("visibilitychange", markRead);

  // ---- notifications (the manual's: clicking one opens the conversation)
  const bell = document.getElementById("enable-notifications");
  if (bell && "Notification" in window && Notification.permission === "default") {
    bell.hidden = false;
    bell.addEventListener("click", async () => {
      await Notification.requestPermission();
      bell.hidden = Notification.permission === "default";
    });
  }
  function notify(title, body, to, tag) {
    if (!("Notification" in window) || Notification.permission !== "granted" || seen()) return;
    try {
      const n = new Notification(title, { body, tag });
      n.onclick = () => {
        window.focus();
        n.close();
        location.assign("/c/" + encodeURIComponent(to));
      };
    } catch (err) {
      console.warn("notification:", err);
    }
  }
  function textOf(e) {
    const el = e.html && fromHTML(e.html);
    return el ? el.querySelector(".text")?.textContent || "" : "";
  }

  // ---- live updates over Server-Sent Events, one at a time in order
  let chain = Promise.resolve();
  const later = (f) => { chain = chain.then(f).catch((err) => console.warn(err)); };
  function apply(e) {
    switch (e.kind) {
      case "online":
      case "offline":
        setConn(e.online ? "on" : "off", e.detail);
        return;
      case "erased":
        scheduleContacts();
        return refreshConversation();
    }
    if (e.peer === peer) {
      if (e.html) placeBubble(e);
      else later(refreshConversation);
    }
    if (e.kind === "received") {
      notify("New message from " + e.peer, root.dataset.notifyText === "yes" ? textOf(e) : "", e.peer, "sealpost-" + e.peer);
      if (e.peer === peer) markRead();
    }
    if (e.kind === "send_error") {
      notify("Send error", "Your message to " + e.peer + " could not be sent.", e.peer, "sealpost-error-" + e.id);
    }
    scheduleContacts();
  }
  let source = null;
  let backoff = 1000;
  // The server sends a ping every 15 s: silence for three of them means
  // the connection died without telling (a laptop that slept).
  let heard = Date.now();
  setInterval(() => {
    if (source && source.readyState === EventSource.OPEN && Date.now() - heard > 45000) {
      source.close();
      setConn("lost");
      connect();
    }
  }, 5000);
  function connect() {
    heard = Date.now();
    source = new EventSource("/events");
    source.addEventListener("ping", () => { heard = Date.now(); });
    source.addEventListener("hello", (ev) => {
      heard = Date.now();
      const d = JSON.parse(ev.data);
      backoff = 1000;
      setConn(d.online ? "on" : "off");
      // Whatever happened while the stream was down is in the store.
      later(refreshConversation);
      later(refreshContacts);
    });
    source.addEventListener("change", (ev) => {
      heard = Date.now();
      const e = JSON.parse(ev.data);
      later(() => apply(e));
    });
    source.onerror = () => {
      setConn("lost");
      if (source.readyState === EventSource.CLOSED) {
        // The browser gives up on an HTTP error: find out why, and try
        // again unless this sealpost web is gone for good.
        source.close();
        setTimeout(async () => {
          const r = await fetch("/api/state", { headers: json }).catch(() => null);
          if (r && r.status === 401) return setConn("ended");
          connect();
        }, backoff);
        backoff = Math.min(backoff * 2, 15000);
      }
    };
  }
  window.addEventListener("online", () => {
    if (source && source.readyState === EventSource.CLOSED) connect();
  });

  // ---- compose
  const form = document.getElementById("compose");
  if (form) {
    const ta = form.querySelector("textarea");
    const counter = document.getElementById("counter");
    const problemBox = document.getElementById("rule-error");
    const sendButton = document.getElementById("send");
    const update = (onSubmit) => {
      const text = ta.value;
      const n = Rules.countChars(text);
      const problem = Rules.check(text);
      counter.textContent = n + "/" + Rules.maxChars;
      counter.classList.toggle("over", n > Rules.maxChars);
      const show = problem && (onSubmit || problem.code !== "text_empty");
      problemBox.textContent = show ? (onSubmit ? "Not sent: " : "") + problem.message : "";
      ta.setAttribute("aria-invalid", show ? "true" : "false");
      sendButton.setAttribute("aria-disabled", problem ? "true" : "false");
      return problem;
    };
    let busy = false;
    const submit = async () => {
      if (busy || update(true)) {
        ta.focus();
        return;
      }
      busy = true;
      try {
        const r = await fetch(form.action, { method: "POST", headers: json, body: new URLSearchParams({ text: ta.value }) });
        if (r.ok) {
          ta.value = "";
          update(false);
        } else {
          const j = await r.json().catch(() => ({}));
          problemBox.textContent = "Not sent: " + (j.error ? j.error.message : r.status + " " + r.statusText);
        }
      } catch (err) {
        problemBox.textContent = "Not sent: sealpost web is not answering; your text is still here.";
      } finally {
        busy = false;
        ta.focus();
      }
    };
    ta.addEventListener("input", () => update(false));
    ta.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        submit();
      }
    });
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      submit();
    });
    update(false);
    ta.focus();
  }

  // Retry: the same as the form without script, without leaving the page.
  document.addEventListener("submit", async (ev) => {
    const f = ev.target;
    if (!f.classList || !f.classList.contains("retry")) return;
    ev.preventDefault();
    const button = f.querySelector("button");
    button.disabled = true;
    const r = await fetch(f.action, { method: "POST", headers: json }).catch(() => null);
    if (r && r.ok) return; // the new attempt arrives as events
    button.disabled = false;
    const j = r ? await r.json().catch(() => ({})) : {};
    let p = f.querySelector(".retry-error");
    if (!p) {
      p = document.createElement("p");
      p.className = "retry-error";
      p.setAttribute("role", "alert");
      f.append(p);
    }
    p.textContent = j.error ? j.error.message : "sealpost web is not answering";
  });

  decorate(document);
  const list = messagesList();
  if (list) separators(list);
  toBottom();
  markRead();
  connect();
})();
