// The chat page: sign in, conversations, answers streamed over SSE and resumed when cut.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const state = {
    key: localStorage.getItem("spark.key") || "",
    lang: localStorage.getItem("spark.lang") ||
      ((navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en"),
    demo: false, models: [], current: null, next: null, streaming: null,
  };
  const t = (word) => (I18N[state.lang] || I18N.en)[word] || word;

  // -- Markdown, safely: marked renders, DOMPurify keeps only inert HTML ----------------------
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A") {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  });
  function renderMarkdown(element, text) {
    const html = marked.parse(text, { gfm: true, breaks: false, async: false });
    element.innerHTML = DOMPurify.sanitize(html, {
      FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe"],
      FORBID_ATTR: ["style"],
    });
  }

  // -- the API -------------------------------------------------------------------------------
  async function api(method, path, body, extra) {
    const headers = { Authorization: "Bearer " + state.key, ...(extra || {}) };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) { signOut(); throw new Error(t("badKey")); }
    if (!response.ok && response.status !== 204) {
      let message = response.statusText;
      try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    return response;
  }
  const json = async (...args) => (await api(...args)).json();

  // -- words ---------------------------------------------------------------------------------
  function translate() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    document.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
    document.querySelectorAll("[data-i18n-title]").forEach((el) => { el.title = t(el.dataset.i18nTitle); });
    $("lang").textContent = t("lang");
    document.title = t("title");
  }

  // -- signing in ----------------------------------------------------------------------------
  function signOut() {
    localStorage.removeItem("spark.key");
    state.key = "";
    show();
  }
  function show() {
    const signedIn = Boolean(state.key);
    $("signin").hidden = signedIn;
    $("app").hidden = !signedIn;
    $("signout").hidden = !signedIn || state.demo;
    $("menu").hidden = !signedIn;
  }
  async function signIn(key) {
    state.key = key;
    try {
      const models = await json("GET", "/v1/models");
      state.models = models.data;
    } catch (error) {
      state.key = "";
      $("signin-error").textContent = t("badKey");
      show();
      return;
    }
    if (!state.demo) localStorage.setItem("spark.key", key);
    $("signin-error").textContent = "";
    const select = $("model");
    select.replaceChildren(...state.models.map((m) => {
      const option = document.createElement("option");
      option.value = m.id; option.textContent = m.name;
      return option;
    }));
    show();
    await loadConversations(true);
  }

  // -- conversations -------------------------------------------------------------------------
  async function loadConversations(fresh) {
    const query = fresh || !state.next ? "" : "&before=" + state.next;
    const page = await json("GET", "/v1/conversations?limit=30" + query);
    const list = $("conversations");
    if (fresh) list.replaceChildren();
    page.data.forEach((c) => list.append(conversationItem(c)));
    state.next = page.next_before;
    $("more").hidden = !page.has_more;
    if (fresh && !state.current && page.data.length) await openConversation(page.data[0].id);
    if (fresh && !page.data.length) showMessages(null);
  }
  function conversationItem(c) {
    const item = document.createElement("li");
    item.dataset.id = c.id;
    const open = document.createElement("button");
    open.type = "button"; open.className = "title";
    open.textContent = c.title || t("untitled");
    open.addEventListener("click", () => { openConversation(c.id); closeMenu(); });
    const del = document.createElement("button");
    del.type = "button"; del.className = "icon"; del.title = t("del"); del.textContent = "×";
    del.addEventListener("click", async () => {
      if (!confirm(t("confirmDelete"))) return;
      await api("DELETE", "/v1/conversations/" + c.id);
      if (state.current && state.current.id === c.id) state.current = null;
      await loadConversations(true);
    });
    item.append(open, del);
    if (state.current && state.current.id === c.id) item.classList.add("active");
    return item;
  }
  function markActive() {
    document.querySelectorAll("#conversations li").forEach((li) => {
      li.classList.toggle("active", Boolean(state.current) && Number(li.dataset.id) === state.current.id);
    });
  }
  async function openConversation(id) {
    const c = await json("GET", "/v1/conversations/" + id);
    state.current = c;
    markActive();
    showMessages(c);
    if (c.answering) follow(c.id, null);
  }
  async function newConversation() {
    const c = await json("POST", "/v1/conversations", { model: $("model").value });
    state.current = c;
    await loadConversations(true);
    showMessages(c);
    return c;
  }

  // -- messages ------------------------------------------------------------------------------
  function showMessages(c) {
    const box = $("messages");
    box.replaceChildren();
    const messages = c ? c.messages : [];
    $("empty").hidden = messages.length > 0;
    if (c) { const s = $("model"); if ([...s.options].some((o) => o.value === c.model)) s.value = c.model; }
    for (const m of messages) {
      if (m.role === "user") box.append(userBubble(m.content));
      else if (m.status !== "superseded" && m.status !== "streaming") {
        const bubble = answerBubble();
        bubble.text = m.content;
        bubble.render();
        bubble.finish(m.status, null);
        box.append(bubble.element);
      }
    }
    box.scrollTop = box.scrollHeight;
  }
  function userBubble(text) {
    const el = document.createElement("div");
    el.className = "message user";
    el.textContent = text;
    return el;
  }
  function answerBubble() {
    const element = document.createElement("div");
    element.className = "message answer streaming";
    const thinking = document.createElement("details");
    thinking.className = "reasoning"; thinking.hidden = true;
    const summary = document.createElement("summary");
    summary.textContent = t("reasoning");
    const thoughts = document.createElement("div");
    thinking.append(summary, thoughts);
    const body = document.createElement("div");
    body.className = "markdown";
    const sources = document.createElement("ol");
    sources.className = "sources"; sources.hidden = true;
    const foot = document.createElement("div");
    foot.className = "foot";
    const note = document.createElement("span");
    note.className = "note";
    const copy = document.createElement("button");
    copy.type = "button"; copy.className = "link copy"; copy.textContent = t("copy"); copy.hidden = true;
    foot.append(note, copy);
    element.append(thinking, body, sources, foot);
    let pending = false;
    const bubble = {
      element, text: "", reasoning: "",
      render() { renderMarkdown(body, bubble.text); },
      later() {
        if (pending) return;
        pending = true;
        requestAnimationFrame(() => { pending = false; bubble.render(); scrollDown(); });
      },
      think(more) {
        bubble.reasoning += more; thinking.hidden = false; thoughts.textContent = bubble.reasoning;
      },
      sources(list) {
        sources.hidden = false;
        for (const s of list) {
          const li = document.createElement("li");
          const a = document.createElement("a");
          const url = String(s.url || "");
          if (/^https?:\/\//i.test(url)) a.href = url;
          a.target = "_blank"; a.rel = "noopener noreferrer nofollow";
          a.textContent = s.title || url;
          li.append(a); sources.append(li);
        }
      },
      note(text) { note.textContent = text || ""; },
      finish(status, text) {
        element.classList.remove("streaming");
        bubble.render();
        const word = status && status !== "complete" ? t("status_" + status) : "";
        note.textContent = text || (word.startsWith("status_") ? status : word);
        copy.hidden = !bubble.text;
      },
    };
    copy.addEventListener("click", async () => {
      try { await navigator.clipboard.writeText(bubble.text); } catch (e) { /* no clipboard */ }
      copy.textContent = t("copied");
      setTimeout(() => { copy.textContent = t("copy"); }, 1500);
    });
    return bubble;
  }
  function scrollDown() { const box = $("messages"); box.scrollTop = box.scrollHeight; }

  // -- asking and streaming ------------------------------------------------------------------
  async function ask(text) {
    let c = state.current;
    if (!c) c = await newConversation();
    $("empty").hidden = true;
    $("messages").append(userBubble(text));
    scrollDown();
    await follow(c.id, text);
    if (!c.title) await loadConversations(true);
  }
  // Streams the answer to `text` (or the one being written when text is null); on a broken
  // connection it resumes with Last-Event-ID, so nothing is asked twice or lost.
  async function follow(id, text) {
    const bubble = answerBubble();
    bubble.note(t("waiting"));
    $("messages").append(bubble.element);
    setStreaming(id);
    let lastId = null, ended = false, tries = 0;
    const onEvent = (name, data, eventId) => {
      if (eventId) lastId = eventId;
      if (name === "delta") { bubble.note(""); bubble.text += data.text; bubble.later(); }
      else if (name === "reasoning") { bubble.note(""); bubble.think(data.text); }
      else if (name === "sources") bubble.sources(data.sources);
      else if (name === "error") bubble.note(data.message);
      else if (name === "done") {
        ended = true;
        const keep = bubble.element.querySelector(".note").textContent;
        bubble.finish(data.status, data.status === "failed" || data.status === "partial" ? keep || null : data.note);
      }
    };
    try {
      while (!ended) {
        const headers = { Accept: "text/event-stream" };
        let response;
        try {
          if (lastId) {
            headers["Last-Event-ID"] = lastId;
            response = await api("POST", "/v1/conversations/" + id + "/messages", {}, headers);
          } else if (text !== null) {
            response = await api("POST", "/v1/conversations/" + id + "/messages", { text }, headers);
          } else {
            response = await api("GET", "/v1/conversations/" + id + "/events", undefined, headers);
            if (response.status === 204) { bubble.element.remove(); return; }
          }
          await readSse(response, onEvent);
        } catch (error) {
          if (!lastId || tries >= 5) throw error;
        }
        if (!ended) {
          if (!lastId || ++tries > 5) break;
          bubble.note(t("reconnecting"));
          await new Promise((r) => setTimeout(r, 500 * tries));
        }
      }
    } catch (error) {
      bubble.finish("failed", t("error") + " " + error.message);
    } finally {
      setStreaming(null);
    }
  }
  function setStreaming(id) {
    state.streaming = id;
    $("stop").hidden = id === null;
    $("send").hidden = id !== null;
  }
  async function stop() {
    if (state.streaming !== null) await api("POST", "/v1/conversations/" + state.streaming + "/stop", {});
  }

  // -- the phone layout's menu ---------------------------------------------------------------
  function closeMenu() { document.body.classList.remove("menu-open"); $("menu").setAttribute("aria-expanded", "false"); }

  // -- wiring --------------------------------------------------------------------------------
  function wire() {
    $("lang").addEventListener("click", () => {
      state.lang = state.lang === "zh" ? "en" : "zh";
      localStorage.setItem("spark.lang", state.lang);
      translate();
    });
    $("signout").addEventListener("click", signOut);
    $("signin-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("key").value.trim()); });
    $("new").addEventListener("click", async () => { state.current = null; await newConversation(); closeMenu(); });
    $("more").addEventListener("click", () => loadConversations(false));
    $("stop").addEventListener("click", stop);
    $("menu").addEventListener("click", () => {
      const open = document.body.classList.toggle("menu-open");
      $("menu").setAttribute("aria-expanded", String(open));
    });
    const question = $("question");
    $("composer").addEventListener("submit", (e) => {
      e.preventDefault();
      const text = question.value.trim();
      if (!text || state.streaming !== null) return;
      question.value = "";
      ask(text);
    });
    question.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("composer").requestSubmit(); }
    });
  }

  async function start() {
    translate();
    wire();
    try {
      const config = await (await fetch("/web/config.json")).json();
      if (config.demo && config.key) { state.demo = true; state.key = config.key; }
    } catch (e) { /* no config: sign in as usual */ }
    if (state.key) await signIn(state.key); else show();
    document.body.dataset.ready = "true";
  }
  start();
})();
