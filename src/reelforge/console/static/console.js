/* reelforge console core: tokens, API calls, uploads by signed URL (RF.upload), JSON -> HTML through <template>s,
 * the HTMX extension "rf", problem+json next to form fields, toasts. Plain JavaScript, no build step.
 *
 * Templates use a few attributes, filled from a JSON value (see RF.render):
 *   data-text="path|filter:arg"    text content          data-bind-ATTR="/jobs/{id}"   attribute, with {expr} parts
 *   data-if="expr" / data-if-not   keep or drop          data-each="path" data-tpl="id" render a list into it
 *   data-value="expr"              form control value
 * HTMX elements: rf-template (render the JSON answer), rf-items (path of the list), rf-empty (template for
 * an empty list), rf-prepare (a function in RF.prepare), rf-after ("refresh:#sel reset toast:Saved").
 */
(function () {
  "use strict";

  const RF = (window.RF = window.RF || {});
  const AUTH_KEY = "reelforge.auth";
  const EARLY_S = 60; // refresh this long before the access token expires

  // ---- tokens ---------------------------------------------------------------------------------------------
  // The access token (short-lived) is kept in localStorage, shared by the tabs; the refresh token never reaches
  // a script: POST /v1/auth/session puts it in an HttpOnly, SameSite=Strict cookie that only the session routes
  // receive (see docs/decisions.md, "The console's refresh token is an HttpOnly cookie").
  function withLock(fn) {
    // One refresh at a time across tabs: the cookie's refresh token rotates, so two tabs refreshing at once
    // would sign out one.
    return navigator.locks ? navigator.locks.request("reelforge-refresh", fn) : fn();
  }

  const Auth = (RF.auth = {
    load() {
      try {
        const s = JSON.parse(localStorage.getItem(AUTH_KEY) || "null");
        if (s && s.refresh) this.save({ access_token: s.access, expires_in: 0 }); // an older console kept it here
        return s && s.access ? s : null;
      } catch (e) { return null; }
    },
    /** Keep a session answer ({access_token, expires_in}) of POST /v1/auth/session or its refresh. */
    save(session) {
      const v = { access: session.access_token, exp: Date.now() + session.expires_in * 1000 };
      localStorage.setItem(AUTH_KEY, JSON.stringify(v));
      return v;
    },
    clear() { localStorage.removeItem(AUTH_KEY); },
    fresh(s) { return !!s && s.exp - Date.now() > EARLY_S * 1000; },
    /** A usable access token, refreshed first when it is about to expire; null when signed out. */
    async token() {
      const s = this.load();
      if (!s) return null;
      if (this.fresh(s)) return s.access;
      const n = await this.refresh(s.access);
      return n ? n.access : null;
    },
    /** Replace the access token `used` (stale or refused) by a new one, unless another tab or call already did. */
    refresh(used) {
      if (!this._inflight) {
        this._inflight = withLock(() => this._refresh(used)).finally(() => { this._inflight = null; });
      }
      return this._inflight;
    },
    async _refresh(used) {
      const cur = this.load();
      if (!cur) return null;
      if (cur.access !== used && this.fresh(cur)) return cur;
      const r = await fetch("/v1/auth/session/refresh", {
        method: "POST", credentials: "same-origin", headers: { Accept: "application/json" },
      });
      if (!r.ok) {
        if (r.status >= 400 && r.status < 500 && r.status !== 429) this.clear();
        return null;
      }
      return this.save(await r.json());
    },
  });

  RF.toSignin = function () {
    const next = location.pathname + location.search;
    location.assign("/signin" + (next && next !== "/" ? "?next=" + encodeURIComponent(next) : ""));
  };

  RF.signOut = async function () {
    // The server forgets the refresh token and removes its cookie; signed out here even if it cannot be reached.
    try { await fetch("/v1/auth/session", { method: "DELETE", credentials: "same-origin" }); } catch (e) { /* offline */ }
    Auth.clear();
    location.assign("/signin");
  };

  // ---- API calls ----------------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, problem) {
      const p = problem && typeof problem === "object" ? problem : {};
      super(p.detail || p.title || (status ? "HTTP " + status : "Network error"));
      this.status = status;
      this.problem = p;
      this.code = p.code || "";
    }
  }
  RF.ApiError = ApiError;

  /** fetch with the bearer token; one refresh and retry on 401. opts: {anonymous, raw, signal, headers}. */
  RF.fetch = async function (method, path, body, opts) {
    opts = opts || {};
    const send = (token) => {
      const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (token) headers.Authorization = "Bearer " + token;
      return fetch(path, { method, headers, signal: opts.signal, body: body === undefined ? undefined : JSON.stringify(body) });
    };
    if (opts.anonymous) return send(null);
    const before = Auth.load();
    let r = await send(await Auth.token());
    if (r.status === 401 && before) {
      const n = await Auth.refresh((Auth.load() || before).access);
      if (n) r = await send(n.access);
      if (r.status === 401) { Auth.clear(); RF.toSignin(); }
    } else if (r.status === 401 && !before) {
      RF.toSignin();
    }
    return r;
  };

  RF.api = async function (method, path, body, opts) {
    let r;
    try {
      r = await RF.fetch(method, path, body, opts);
    } catch (e) {
      if (e && e.name === "AbortError") throw e;
      throw new ApiError(0, { detail: "Cannot reach the server. Check your connection and try again." });
    }
    const text = await r.text();
    let data = null;
    if (text) { try { data = JSON.parse(text); } catch (e) { data = { detail: text.slice(0, 300) }; } }
    if (!r.ok) throw new ApiError(r.status, data);
    return data;
  };
  RF.get = (path, opts) => RF.api("GET", path, undefined, opts);
  RF.post = (path, body, opts) => RF.api("POST", path, body === undefined ? {} : body, opts);

  /** Server-sent events read with fetch (EventSource cannot send a bearer token). Calls onEvent(type, data, id). */
  RF.stream = async function (path, onEvent, signal) {
    const r = await RF.fetch("GET", path, undefined, { signal, headers: { Accept: "text/event-stream" } });
    if (!r.ok) {
      let p = null;
      try { p = await r.json(); } catch (e) { /* not json */ }
      throw new ApiError(r.status, p);
    }
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let type = "message", data = "", id = null;
        for (const line of frame.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const i = line.indexOf(":");
          const field = i < 0 ? line : line.slice(0, i);
          const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
          if (field === "event") type = val;
          else if (field === "data") data += (data ? "\n" : "") + val;
          else if (field === "id") id = val;
        }
        if (!data) continue;
        let parsed = data;
        try { parsed = JSON.parse(data); } catch (e) { /* keep text */ }
        if (onEvent(type, parsed, id) === false) { reader.cancel().catch(() => {}); return; }
      }
    }
  };

  // ---- uploads by signed URL ----------------------------------------------------------------------------------------
  const PART_CONCURRENCY = 3; // parts in flight at once: fast on real links, gentle on the server
  const PART_RETRIES = 3; // further tries of a part that failed for a reason that may pass
  const RETRY_BASE_MS = 500;
  const RETRY_MAX_MS = 8000;

  const aborted = () => new DOMException("The upload was cancelled.", "AbortError");

  function storageError(xhr) {
    let p = null;
    try { p = JSON.parse(xhr.responseText); } catch (e) { /* not json */ }
    if (!p || typeof p !== "object") p = { detail: "Storage answered HTTP " + xhr.status };
    const err = new ApiError(xhr.status, p);
    const after = Number(xhr.getResponseHeader("Retry-After"));
    if (after > 0) err.retryAfterMs = after * 1000;
    return err;
  }

  // Network errors, timeouts, throttling and server faults may pass on a second try; a refused signature, a
  // closed upload or a too large body will not.
  const retryable = (e) => e instanceof ApiError && (e.status === 0 || e.status === 408 || e.status === 429 || e.status >= 500);

  function pause(ms, signal) {
    return new Promise((resolve, reject) => {
      if (signal.aborted) { reject(aborted()); return; }
      const stop = () => { clearTimeout(t); reject(aborted()); };
      const t = setTimeout(() => { signal.removeEventListener("abort", stop); resolve(); }, ms);
      signal.addEventListener("abort", stop, { once: true });
    });
  }

  /** One signed request with `body`; XMLHttpRequest, as fetch() reports no upload progress. Resolves to the ETag. */
  function sendSigned(req, body, signal, onLoaded) {
    return new Promise((resolve, reject) => {
      if (signal.aborted) { reject(aborted()); return; }
      const xhr = new XMLHttpRequest();
      const stop = () => xhr.abort();
      const settle = (fn, v) => { signal.removeEventListener("abort", stop); fn(v); };
      xhr.open(req.method || "PUT", req.url);
      for (const [k, v] of Object.entries(req.headers || {})) {
        // The browser sets these itself and refuses to be told.
        if (!/^(content-length|host)$/i.test(k)) xhr.setRequestHeader(k, v);
      }
      xhr.upload.onprogress = (e) => onLoaded(Math.min(e.loaded, body.size));
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          onLoaded(body.size);
          settle(resolve, xhr.getResponseHeader("ETag"));
        } else {
          settle(reject, storageError(xhr));
        }
      };
      xhr.onerror = () => settle(reject, new ApiError(0, { detail: "The upload was interrupted (network error)." }));
      xhr.ontimeout = xhr.onerror;
      xhr.onabort = () => settle(reject, aborted());
      signal.addEventListener("abort", stop, { once: true });
      xhr.send(body);
    });
  }

  async function sendWithRetry(req, body, signal, onLoaded, retries) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await sendSigned(req, body, signal, onLoaded);
      } catch (e) {
        if (signal.aborted || attempt >= retries || !retryable(e)) throw e;
        onLoaded(0);
        const backoff = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** attempt) * (0.5 + Math.random() / 2);
        await pause(Math.max(backoff, e.retryAfterMs || 0), signal);
      }
    }
  }

  /** The generic steps of POST /v1/uploads; pages that upload through their own routes replace them. */
  const uploadSteps = {
    create(file, o, signal) {
      const body = { filename: o.filename || file.name || undefined, content_type: o.contentType || file.type || "application/octet-stream", size: file.size };
      // UploadCreate forbids unknown fields: send only what was asked for.
      for (const k of ["lifecycle", "sha256", "multipart"]) if (o[k] !== undefined && o[k] !== null && o[k] !== "") body[k] = o[k];
      return RF.post("/v1/uploads", body, { signal });
    },
    complete(upload, parts, signal) {
      return RF.post("/v1/uploads/" + encodeURIComponent(upload.id) + "/complete", parts ? { parts } : {}, { signal });
    },
    abort(upload) {
      return RF.post("/v1/uploads/" + encodeURIComponent(upload.id) + "/abort");
    },
  };

  /**
   * Upload a File (or Blob) by the platform's protocol: create the upload, PUT the bytes to the signed URL it
   * gives (or each part to its own URL, a few at a time, a failed part tried again with backoff), then complete
   * it with the parts' ETags. Resolves to what the completion answers (for /v1/uploads, the asset).
   *
   * options:
   *   filename, contentType, lifecycle, sha256, multipart   the upload request (defaults from the file)
   *   onProgress(sentBytes, totalBytes)                     as bytes go out (a retried part starts again)
   *   onCreated(upload)                                     once the upload exists, before any bytes are sent
   *   signal                                                an AbortSignal: stops every request, aborts the upload
   *   concurrency, retries                                  parts in flight (3); further tries per part (3)
   *   create(signal) -> Promise<upload>                     another route's create step, answering the
   *                                                         UploadPublic shape: {id, put} or {id, part_size, parts}
   *   complete(upload, parts, signal) -> Promise<result>    another route's completion; parts is null for a
   *                                                         single PUT, else [{part_number, etag}] in order
   *   abort(upload) -> Promise                              undo after a cancel (default POST .../abort; null: none)
   */
  RF.upload = async function (file, options) {
    const o = options || {};
    const total = file.size;
    const ctl = new AbortController();
    const outer = o.signal;
    const follow = () => ctl.abort();
    if (outer) {
      if (outer.aborted) throw aborted();
      outer.addEventListener("abort", follow, { once: true });
    }
    const signal = ctl.signal;
    let reported = -1;
    const report = (sent) => {
      sent = Math.min(sent, total);
      if (o.onProgress && sent !== reported) o.onProgress(sent, total);
      reported = sent;
    };
    let upload = null;
    try {
      upload = await (o.create ? o.create(signal) : uploadSteps.create(file, o, signal));
      if (signal.aborted) throw aborted();
      if (o.onCreated) o.onCreated(upload);
      report(0);
      const retries = o.retries == null ? PART_RETRIES : o.retries;
      let parts = null;
      if (upload.parts && upload.parts.length) {
        const loaded = new Map();
        const sum = () => { let s = 0; loaded.forEach((n) => { s += n; }); return s; };
        const queue = upload.parts.slice().sort((a, b) => a.part_number - b.part_number);
        const done = [];
        const lane = async () => {
          while (queue.length && !signal.aborted) {
            const part = queue.shift();
            const start = (part.part_number - 1) * upload.part_size;
            const blob = file.slice(start, start + part.size);
            const etag = await sendWithRetry(part, blob, signal, (n) => { loaded.set(part.part_number, n); report(sum()); }, retries);
            // Without the ETag the store cannot join the parts (an S3 bucket's CORS rule must expose it).
            if (!etag) throw new ApiError(0, { detail: "The storage did not return the ETag of part " + part.part_number + "." });
            done.push({ part_number: part.part_number, etag });
          }
        };
        const lanes = Math.max(1, Math.min(o.concurrency || PART_CONCURRENCY, queue.length));
        // The first part that fails for good stops the others; its error is the one to report.
        let failure = null;
        await Promise.all(Array.from({ length: lanes }, () => lane().catch((e) => { failure = failure || e; ctl.abort(); })));
        if (outer && outer.aborted) throw aborted();
        if (failure) throw failure;
        parts = done.sort((a, b) => a.part_number - b.part_number);
      } else if (upload.put) {
        await sendWithRetry(upload.put, file, signal, report, retries);
      } else {
        throw new ApiError(0, { detail: "The upload has neither a signed URL nor parts." });
      }
      report(total);
      return await (o.complete ? o.complete(upload, parts, signal) : uploadSteps.complete(upload, parts, signal));
    } catch (e) {
      if (upload && outer && outer.aborted) {
        const undo = o.abort === undefined ? uploadSteps.abort : o.abort;
        if (undo) Promise.resolve().then(() => undo(upload)).catch(() => {});
      }
      throw e;
    } finally {
      if (outer) outer.removeEventListener("abort", follow);
    }
  };

  // ---- the signed-in user -------------------------------------------------------------------------------------------
  let mePromise = null;
  RF.me = function (force) {
    if (!mePromise || force) {
      mePromise = RF.get("/v1/auth/me").then((me) => {
        RF.user = me;
        paintMe(me);
        return me;
      });
    }
    return mePromise;
  };

  function paintMe(me) {
    const set = (k, v) => document.querySelectorAll('[data-me="' + k + '"]').forEach((el) => { el.textContent = v; });
    set("email", me.email);
    set("credits", fmt.num(me.credits));
    set("initial", (me.email || "?").charAt(0));
    set("role", me.role);
    document.querySelectorAll('[data-me="role"]').forEach((el) => { el.className = "badge s-" + me.role; });
    const admin = me.role === "admin";
    document.querySelectorAll("[data-admin-only]").forEach((el) => { el.hidden = !admin; });
    if (document.body.hasAttribute("data-admin-page")) {
      const denied = document.querySelector("[data-admin-denied]");
      const content = document.querySelector("[data-requires-admin]");
      if (denied) denied.hidden = admin;
      if (content) content.hidden = !admin;
    }
  }

  // ---- formatting ---------------------------------------------------------------------------------------------------------
  const fmt = (RF.fmt = {
    num(v) { return v == null || v === "" ? "–" : Number(v).toLocaleString("en-US"); },
    signed(v) { v = Number(v || 0); return (v > 0 ? "+" : v < 0 ? "−" : "") + Math.abs(v).toLocaleString("en-US"); },
    pct(v) { return Math.round(Math.max(0, Math.min(1, Number(v) || 0)) * 100) + "%"; },
    short(v) { return v ? String(v).slice(0, 8) : ""; },
    date(v) {
      if (!v) return "–";
      const d = new Date(v);
      if (isNaN(d)) return String(v);
      const opts = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" };
      if (d.getFullYear() !== new Date().getFullYear()) opts.year = "numeric";
      return d.toLocaleString("en-GB", opts);
    },
    time(v) {
      if (!v) return "";
      const d = typeof v === "number" ? new Date(v * 1000) : new Date(v);
      return isNaN(d) ? String(v) : d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
    },
    ago(v) {
      if (!v) return "–";
      const s = (Date.now() - new Date(v).getTime()) / 1000;
      if (isNaN(s)) return String(v);
      if (s < 5) return "just now";
      if (s < 60) return Math.floor(s) + " s ago";
      if (s < 3600) return Math.floor(s / 60) + " min ago";
      if (s < 86400) return Math.floor(s / 3600) + " h ago";
      return Math.floor(s / 86400) + " d ago";
    },
    dur(v) {
      if (v == null || v === "" || isNaN(Number(v))) return "–";
      v = Number(v);
      if (v < 1) return Math.round(v * 1000) + " ms";
      if (v < 60) return v.toFixed(v < 10 ? 2 : 1) + " s";
      const unit = (n, a, b) => { const r = Math.round(n % b); return Math.floor(n / b) + " " + a + (r ? " " + r : ""); };
      if (v < 3600) return unit(v, "min", 60) + (Math.round(v % 60) ? " s" : "");
      return unit(v / 60, "h", 60) + (Math.round((v / 60) % 60) ? " min" : "");
    },
    age(v) { return v == null ? "–" : fmt.dur(v); },
    bytes(v) {
      v = Number(v);
      if (!isFinite(v)) return "–";
      const u = ["B", "KB", "MB", "GB", "TB"];
      let i = 0;
      while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
      return (i ? v.toFixed(v < 10 ? 1 : 0) : v) + " " + u[i];
    },
    json(v) { return JSON.stringify(v, null, 2); },
    jobdur(j) {
      if (!j || !j.started_at) return "–";
      const end = j.finished_at ? new Date(j.finished_at) : new Date();
      return fmt.dur((end - new Date(j.started_at)) / 1000);
    },
    join(v, sep) { return Array.isArray(v) ? v.join(sep || ", ") : v; },
    default(v, d) { return v == null || v === "" || (Array.isArray(v) && !v.length) ? d : v; },
    eq(v, arg) { return String(v) === arg; },
    in(v, arg) { return arg.split("/").includes(String(v)); },
    not(v) { return !truthy(v); },
    iff(v, arg) { return truthy(v) ? arg : ""; },
    len(v) { return v ? v.length : 0; },
    upper(v) { return v == null ? "" : String(v).toUpperCase(); },
  });

  // ---- templates ---------------------------------------------------------------------------------------------------------------
  function get(obj, path) {
    if (path === "." || path === "") return obj;
    return path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
  }
  function truthy(v) { return Array.isArray(v) ? v.length > 0 : !!v; }
  function evaluate(expr, data) {
    const parts = expr.split("|").map((s) => s.trim());
    let v = get(data, parts[0]);
    for (const f of parts.slice(1)) {
      const i = f.indexOf(":");
      const name = i < 0 ? f : f.slice(0, i);
      const arg = i < 0 ? undefined : f.slice(i + 1);
      if (fmt[name]) v = fmt[name](v, arg);
    }
    return v;
  }
  function interpolate(str, data) {
    return str.replace(/\{([^{}]+)\}/g, (_, e) => {
      const v = evaluate(e, data);
      return v == null ? "" : String(v);
    });
  }
  RF.evaluate = evaluate;

  function fill(el, data) {
    for (const child of Array.from(el.children)) {
      if (child.hasAttribute("data-if") && !truthy(evaluate(child.getAttribute("data-if"), data))) { child.remove(); continue; }
      if (child.hasAttribute("data-if-not") && truthy(evaluate(child.getAttribute("data-if-not"), data))) { child.remove(); continue; }
      child.removeAttribute("data-if");
      child.removeAttribute("data-if-not");
      for (const attr of Array.from(child.attributes)) {
        if (!attr.name.startsWith("data-bind-")) continue;
        const name = attr.name.slice(10);
        const value = interpolate(attr.value, data);
        if (name === "class") value.split(/\s+/).filter(Boolean).forEach((c) => child.classList.add(c));
        else child.setAttribute(name, value);
        child.removeAttribute(attr.name);
      }
      if (child.hasAttribute("data-text")) {
        const v = evaluate(child.getAttribute("data-text"), data);
        child.textContent = v == null ? "" : String(v);
        child.removeAttribute("data-text");
      }
      if (child.hasAttribute("data-value")) {
        const v = evaluate(child.getAttribute("data-value"), data);
        if (child.type === "checkbox") child.checked = truthy(v);
        else child.value = v == null ? "" : String(v);
        if (child.tagName === "SELECT") {
          Array.from(child.options).forEach((o) => { if (o.value === child.value) o.setAttribute("selected", ""); });
        } else if (child.type === "checkbox") {
          if (child.checked) child.setAttribute("checked", ""); else child.removeAttribute("checked");
        } else {
          child.setAttribute("value", child.value);
        }
        child.removeAttribute("data-value");
      }
      if (child.hasAttribute("data-each")) {
        const items = evaluate(child.getAttribute("data-each"), data) || [];
        const tpl = child.getAttribute("data-tpl");
        child.removeAttribute("data-each");
        for (const item of items) child.append(RF.render(tpl, item));
        continue;
      }
      fill(child, data);
    }
  }

  /** A DocumentFragment from <template id=tpl> filled with data (text is set as text: no HTML injection). */
  RF.render = function (tpl, data) {
    const t = typeof tpl === "string" ? document.getElementById(tpl) : tpl;
    if (!t) throw new Error("no template " + tpl);
    const frag = t.content.cloneNode(true);
    const holder = document.createElement("div");
    holder.append(frag);
    fill(holder, data);
    const out = document.createDocumentFragment();
    while (holder.firstChild) out.append(holder.firstChild);
    return out;
  };

  /** Replace el's content with the rendering (or a list of them, or the empty template). */
  RF.renderInto = function (el, tpl, data, opts) {
    opts = opts || {};
    if (typeof el === "string") el = document.querySelector(el);
    if (!el) return;
    el.replaceChildren();
    if (Array.isArray(data)) {
      if (!data.length && opts.empty) el.append(RF.render(opts.empty, {}));
      data.forEach((d) => el.append(RF.render(tpl, d)));
    } else {
      el.append(RF.render(tpl, data));
    }
    if (window.htmx) htmx.process(el);
  };

  RF.prepare = RF.prepare || {};

  // ---- forms -----------------------------------------------------------------------------------------------------------------------
  function setPath(obj, path, value) {
    const keys = path.split(".");
    let o = obj;
    keys.slice(0, -1).forEach((k) => { o = o[k] = o[k] && typeof o[k] === "object" ? o[k] : {}; });
    o[keys[keys.length - 1]] = value;
  }

  /** Form values as JSON: dotted names nest; data-type (int, number, bool, list, array) or the input type decides. */
  RF.formJson = function (form, entries) {
    const out = {};
    const seenArrays = new Set();
    entries = entries || Array.from(new FormData(form).entries());
    for (const [name, raw] of entries) {
      const field = form.elements ? form.elements.namedItem(name) : null;
      const input = field && typeof field.length === "number" && !field.tagName ? field[0] : field;
      const declared = input && input.dataset ? input.dataset.type : undefined;
      const type = declared || (input && (input.type === "number" || input.type === "range") ? "number" : input && input.type === "checkbox" ? "bool" : "string");
      if (type === "array") {
        if (!seenArrays.has(name)) { setPath(out, name, []); seenArrays.add(name); }
        get(out, name).push(raw);
        continue;
      }
      if (raw === "" && (type !== "string" || (input && input.hasAttribute("data-optional")))) continue;
      let v = raw;
      if (type === "number") v = Number(raw);
      else if (type === "int") v = Number.isInteger(Number(raw)) ? Number(raw) : raw;
      else if (type === "bool") v = raw === "true" || raw === "on" || raw === "1";
      else if (type === "list") v = String(raw).split(",").map((s) => s.trim()).filter(Boolean);
      setPath(out, name, v);
    }
    form.querySelectorAll && form.querySelectorAll("input[type=checkbox]").forEach((cb) => {
      if (!cb.name || cb.checked) return;
      if (cb.dataset.type === "array" && !seenArrays.has(cb.name)) { setPath(out, cb.name, []); seenArrays.add(cb.name); }
      else if (cb.dataset.type === "bool" || (!cb.dataset.type && cb.type === "checkbox")) setPath(out, cb.name, false);
    });
    return out;
  };

  function findField(form, field) {
    if (!field || !form.elements) return null;
    field = String(field).replace(/(\.\d+)+$/, "");
    const names = Array.from(form.elements).filter((e) => e.name && e.type !== "hidden");
    const last = field.split(".").pop();
    return names.find((e) => e.name === field)
      || names.find((e) => e.name.endsWith("." + field))
      || names.find((e) => field.endsWith("." + e.name))
      || names.find((e) => e.name.split(".").pop() === last)
      || null;
  }

  RF.clearErrors = function (form) {
    form.querySelectorAll(".field-error[data-generated]").forEach((e) => e.remove());
    form.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; e.hidden = true; });
    form.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
    const box = form.querySelector(".form-error");
    if (box) { box.hidden = true; const t = box.querySelector("[data-msg]") || box; t.textContent = ""; }
  };

  function fieldError(form, input, message) {
    input.setAttribute("aria-invalid", "true");
    const wrap = input.closest(".field, .checks, .inline-form") || input.parentElement;
    let el = form.querySelector('.field-error[data-for="' + CSS.escape(input.name) + '"]');
    if (!el) {
      el = document.createElement("p");
      el.className = "field-error";
      el.dataset.for = input.name;
      el.dataset.generated = "";
      (wrap.classList.contains("checks") ? wrap.parentElement : wrap).append(el);
    }
    el.id = el.id || "err-" + Math.random().toString(36).slice(2);
    el.textContent = message;
    el.hidden = false;
    input.setAttribute("aria-describedby", el.id);
  }

  /** Show a problem+json answer on a form: each `errors[].field` (and `field`) next to its control, the rest on top. */
  RF.showProblem = function (form, err) {
    const p = err.problem || {};
    RF.clearErrors(form);
    const items = (p.errors || []).slice();
    if (p.field) items.push({ field: p.field, message: p.detail });
    let placed = 0;
    for (const it of items) {
      const input = findField(form, it.field);
      if (input) { fieldError(form, input, it.message); placed++; }
    }
    const message = placed && placed === items.length ? (placed > 1 ? "Please fix the highlighted fields." : "") : err.message;
    const box = form.querySelector(".form-error");
    if (message && box) {
      (box.querySelector("[data-msg]") || box).textContent = message;
      box.hidden = false;
    } else if (message) {
      RF.toast(message, "bad");
    }
    const first = form.querySelector("[aria-invalid=true]");
    if (first) first.focus();
  };

  /** Wire a plain form to an async submit; errors land next to their fields. */
  RF.onSubmit = function (form, handler) {
    if (typeof form === "string") form = document.querySelector(form);
    if (!form) return;
    form.addEventListener("input", (e) => clearOne(form, e.target));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const button = form.querySelector("[type=submit]");
      RF.clearErrors(form);
      if (button) button.disabled = true;
      try {
        await handler(RF.formJson(form), form);
      } catch (err) {
        if (err instanceof ApiError) RF.showProblem(form, err);
        else { console.error(err); RF.showProblem(form, new ApiError(0, { detail: String(err.message || err) })); }
      } finally {
        if (button) button.disabled = false;
      }
    });
  };

  function clearOne(form, input) {
    if (!input || !input.name || input.getAttribute("aria-invalid") !== "true") return;
    input.removeAttribute("aria-invalid");
    const el = form.querySelector('.field-error[data-for="' + CSS.escape(input.name) + '"]');
    if (el) el.hidden = true;
  }

  // ---- toasts ---------------------------------------------------------------------------------------------------------------------------
  RF.toast = function (message, kind) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const t = document.createElement("div");
    t.className = "toast " + (kind || "ok");
    t.setAttribute("role", kind === "bad" ? "alert" : "status");
    t.innerHTML = '<svg class="icon"><use href="#i-' + (kind === "bad" ? "alert" : "check") + '"></use></svg><span></span>';
    t.querySelector("span").textContent = message;
    box.append(t);
    setTimeout(() => t.remove(), kind === "bad" ? 7000 : 3500);
  };

  RF.copy = async function (text, label) {
    try { await navigator.clipboard.writeText(text); RF.toast((label || "Value") + " copied"); }
    catch (e) { RF.toast("Copy failed: select the text and copy it yourself", "bad"); }
  };

  // ---- HTMX: JSON in, templates out -------------------------------------------------------------------------------------------------------
  const isApi = (path) => /^\/v1\//.test(path) || path.startsWith(location.origin + "/v1/");
  const retried = new WeakSet();

  function defineExtension() {
    htmx.defineExtension("rf", {
      onEvent(name, evt) {
        if (name !== "htmx:configRequest") return;
        const d = evt.detail;
        if (!isApi(d.path)) return;
        const s = Auth.load();
        if (s) d.headers.Authorization = "Bearer " + s.access;
        d.headers.Accept = "application/json";
        if (d.verb === "get" || d.verb === "delete") {
          // Empty filters mean "any": leave them out instead of sending `status=`.
          for (const [k, v] of Array.from(d.formData.entries())) if (v === "") delete d.parameters[k];
        } else {
          d.headers["Content-Type"] = "application/json";
        }
      },
      encodeParameters(xhr, parameters, elt) {
        xhr.overrideMimeType("text/json");
        const form = elt.tagName === "FORM" ? elt : elt.closest("form") || elt;
        const extra = elt.getAttribute("rf-json");
        let body = Object.assign(RF.formJson(form, Array.from(parameters.entries())), extra ? JSON.parse(extra) : {});
        // A form may reshape its values before they are sent (rf-body names a function of RF.body).
        const shape = form.getAttribute && form.getAttribute("rf-body");
        if (shape && RF.body && RF.body[shape]) body = RF.body[shape](body, form);
        return JSON.stringify(body);
      },
      transformResponse(text, xhr, elt) {
        const tpl = elt.getAttribute("rf-template");
        const prep = elt.getAttribute("rf-prepare");
        if (!tpl && !prep) return text;
        let data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { return ""; }
        // A prepare function may render several parts of the page itself (and return nothing to swap).
        if (prep && RF.prepare[prep]) data = RF.prepare[prep](data, elt);
        if (!tpl) return "";
        const box = document.createElement("div");
        const itemsPath = elt.getAttribute("rf-items");
        if (itemsPath !== null) {
          const items = get(data, itemsPath) || [];
          if (!items.length && elt.getAttribute("rf-empty")) box.append(RF.render(elt.getAttribute("rf-empty"), data || {}));
          items.forEach((it) => box.append(RF.render(tpl, it)));
        } else {
          box.append(RF.render(tpl, data));
        }
        return box.innerHTML;
      },
    });
  }

  // Every API request waits until the session is known and the token is fresh (refreshing first if needed).
  document.addEventListener("htmx:confirm", (evt) => {
    const d = evt.detail;
    if (!isApi(d.path)) return;
    evt.preventDefault();
    RF.ready.then(() => Auth.token()).then((token) => {
      if (!token) { RF.toSignin(); return; }
      if (d.elt.closest("[data-requires-admin]") && !(RF.user && RF.user.role === "admin")) return;
      d.issueRequest(false);
    }).catch((e) => console.error(e));
  });

  document.addEventListener("htmx:beforeRequest", (evt) => {
    const form = evt.detail.elt.closest && evt.detail.elt.closest("form");
    if (form && evt.detail.elt === form) RF.clearErrors(form);
  });

  document.addEventListener("htmx:afterRequest", (evt) => {
    const elt = evt.detail.elt;
    if (!evt.detail.successful) return;
    retried.delete(elt);
    const after = elt.getAttribute && elt.getAttribute("rf-after");
    if (!after) return;
    for (const action of after.split(/\s+(?=refresh:|reset|toast:|go:|me\b)/)) {
      const a = action.trim();
      if (a.startsWith("refresh:")) a.slice(8).split(",").forEach((sel) => document.querySelectorAll(sel.trim()).forEach((t) => htmx.trigger(t, "refresh")));
      else if (a === "reset" && elt.tagName === "FORM") elt.reset();
      else if (a.startsWith("toast:")) RF.toast(a.slice(6));
      else if (a === "me") RF.me(true).catch(() => {});
      else if (a.startsWith("go:")) {
        let data = {};
        try { data = JSON.parse(evt.detail.xhr.responseText || "{}"); } catch (e) { /* keep {} */ }
        location.assign(interpolate(a.slice(3), data));
      }
    }
  });

  document.addEventListener("htmx:responseError", (evt) => {
    const d = evt.detail;
    const xhr = d.xhr;
    let problem = null;
    try { problem = JSON.parse(xhr.responseText); } catch (e) { problem = { detail: xhr.statusText || "HTTP " + xhr.status }; }
    const elt = d.elt;
    if (xhr.status === 401 && Auth.load() && !retried.has(elt)) {
      // The token was refused although fresh (e.g. the server's key changed): refresh once and resend.
      retried.add(elt);
      const cfg = d.requestConfig || {};
      Auth.refresh(Auth.load().access).then((n) => {
        if (!n) { RF.toSignin(); return; }
        htmx.ajax(cfg.verb || "get", cfg.path || d.pathInfo.requestPath, { source: elt, target: d.target });
      });
      return;
    }
    if (xhr.status === 401) { Auth.clear(); RF.toSignin(); return; }
    const err = new ApiError(xhr.status, problem);
    const form = elt.tagName === "FORM" ? elt : null;
    if (form) RF.showProblem(form, err);
    else RF.toast(err.message, "bad");
  });

  document.addEventListener("htmx:sendError", () => RF.toast("Cannot reach the server. Check your connection and try again.", "bad"));

  // ---- page chrome -----------------------------------------------------------------------------------------------------------------------------
  function chrome() {
    const body = document.body;
    document.querySelectorAll("[data-open-menu]").forEach((b) => b.addEventListener("click", () => body.classList.add("menu-open")));
    document.querySelectorAll("[data-close-menu]").forEach((b) => b.addEventListener("click", () => body.classList.remove("menu-open")));
    const toggle = document.querySelector("[data-user-toggle]");
    const menu = document.querySelector("[data-user-menu]");
    if (toggle && menu) {
      toggle.addEventListener("click", (e) => {
        e.stopPropagation();
        menu.hidden = !menu.hidden;
        toggle.setAttribute("aria-expanded", String(!menu.hidden));
      });
      document.addEventListener("click", (e) => { if (!menu.contains(e.target)) { menu.hidden = true; toggle.setAttribute("aria-expanded", "false"); } });
    }
    document.querySelectorAll("[data-signout]").forEach((b) => b.addEventListener("click", RF.signOut));
    document.addEventListener("click", (e) => {
      const c = e.target.closest("[data-copy]");
      if (c) RF.copy(c.getAttribute("data-copy"), c.getAttribute("data-copy-label"));
    });
    // Forms driven by HTMX clear a field's error as soon as it is edited.
    document.addEventListener("input", (e) => { const f = e.target.form; if (f) clearOne(f, e.target); });
  }

  // RF.ready: the session is known (user loaded) for pages that need one.
  let readyResolve;
  RF.ready = new Promise((resolve) => { readyResolve = resolve; });
  RF.pages = RF.pages || {};

  if (window.htmx) defineExtension();

  document.addEventListener("DOMContentLoaded", async () => {
    chrome();
    const body = document.body;
    const page = body.dataset.page;
    if (body.dataset.auth === "public") {
      readyResolve();
      if (RF.pages[page]) RF.pages[page]();
      return;
    }
    if (!Auth.load()) { RF.toSignin(); return; }
    try {
      await RF.me();
    } catch (e) {
      if (e.status === 401 || e.status === 403) { Auth.clear(); RF.toSignin(); return; }
      RF.toast(e.message, "bad");
    }
    readyResolve();
    if (RF.pages[page]) {
      try { await RF.pages[page](); } catch (e) { console.error(e); RF.toast(e.message || String(e), "bad"); }
    }
  });
})();
