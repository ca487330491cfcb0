/* reelforge console pages: one function per page (body[data-page]), run once the session is known. */
(function () {
  "use strict";
  const RF = (window.RF = window.RF || {});
  const pages = (RF.pages = RF.pages || {});
  const prepare = (RF.prepare = RF.prepare || {});
  const fmt = RF.fmt;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const TERMINAL = ["succeeded", "failed", "cancelled", "dead"];
  const enc = encodeURIComponent;

  function setText(sel, value) { $$(sel).forEach((el) => { el.textContent = value; }); }

  function nextUrl() {
    const next = new URLSearchParams(location.search).get("next") || "/";
    // Only paths on this site: never an absolute or protocol-relative URL from the query string.
    return /^\/(?!\/)/.test(next) && !next.includes("\\") ? next : "/";
  }

  // ---- API keys: the access a new key gets (docs/architecture.md, "API key scopes") ---------------------------------
  RF.body = RF.body || {};
  RF.body.keyScopes = function (body) {
    const access = body.access || "full";
    const apps = body.apps || [];
    delete body.access;
    delete body.apps;
    if (access === "full" && !apps.length) return body; // no scopes: everything the account may do
    body.scopes = [access === "read" ? "read" : "write", ...apps.map((a) => "app:" + a)];
    return body;
  };

  // ---- sign in, register -----------------------------------------------------------------------------------------
  pages.signin = function () {
    if (RF.auth.load()) { location.replace(nextUrl()); return; }
    RF.onSubmit("#signin-form", async (v) => {
      RF.auth.save(await RF.api("POST", "/v1/auth/session", { email: v.email, password: v.password }, { anonymous: true }));
      location.assign(nextUrl());
    });
  };

  pages.register = function () {
    RF.onSubmit("#register-form", async (v) => {
      // The API answers alike whether or not the address has an account (it never tells who is signed up):
      // signing in with the new password is what shows that the account is this one.
      await RF.api("POST", "/v1/auth/register", { email: v.email, password: v.password }, { anonymous: true });
      let pair;
      try {
        pair = await RF.api("POST", "/v1/auth/session", { email: v.email, password: v.password }, { anonymous: true });
      } catch (err) {
        if (!(err instanceof RF.ApiError) || err.code !== "invalid_credentials") throw err;
        throw new RF.ApiError(err.status, {
          code: "registration_not_signed_in",
          detail: "Could not sign in with this email and password. If the address has an account already, sign in with its password.",
        });
      }
      RF.auth.save(pair);
      location.assign("/");
    });
  };

  // ---- dashboard ------------------------------------------------------------------------------------------------------------
  pages.dashboard = async function () {
    const greet = $("[data-me-greeting]");
    if (greet && RF.user) greet.textContent = ", " + RF.user.email.split("@")[0];
    const stats = async () => {
      try {
        const jobs = (await RF.get("/v1/jobs?limit=100")).data;
        const count = (...s) => jobs.filter((j) => s.includes(j.status)).length;
        setText('[data-stat="running"]', count("running"));
        setText('[data-stat="queued"]', count("queued"));
        setText('[data-stat="succeeded"]', count("succeeded"));
        setText('[data-stat="failed"]', count("failed", "dead", "cancelled"));
        setText('[data-stat="total"]', jobs.length);
      } catch (e) { /* the table shows errors */ }
    };
    stats();
    setInterval(stats, 5000);
    // The applications' cards (AppManifest.dashboard): each card's script adds a function to RF.cards.
    await Promise.all((RF.cards || []).map(async (card) => {
      try { await card(); } catch (e) { console.error(e); }
    }));
  };

  /** Follow a job's server-sent events until it ends; reconnects, and falls back to polling. Returns the final job. */
  async function watch(jobId, signal, onEvent) {
    for (let attempt = 0; attempt < 60 && !signal.aborted; attempt++) {
      let final = null;
      try {
        await RF.stream("/v1/jobs/" + enc(jobId) + "/events", (type, data) => {
          if (type === "end") { final = data; return false; }
          onEvent(type, data);
          return true;
        }, signal);
      } catch (e) {
        if (signal.aborted || (e && e.name === "AbortError")) return null;
        if (e.status === 404) return null;
      }
      if (final && final.id) return final;
      if (final && final.reason) return null;
      // The stream ended without the job's end (server restart, timeout): look, then listen again.
      try {
        const j = await RF.get("/v1/jobs/" + enc(jobId));
        if (TERMINAL.includes(j.status)) return j;
      } catch (e) { /* try again */ }
      await sleep(Math.min(5000, 500 * (attempt + 1)));
    }
    return null;
  }
  RF.watch = watch;

  /** A page's run panel following a job to its end: its events go to `on.progress`, `on.status` and `on.history`;
      a job that did not succeed shows why in #run-message and #run-error (code, message). Answers the job when it
      succeeded, null otherwise (or when `signal` aborted the watch). `noun` names the run ("job", "render"). */
  RF.followRun = async function (job, signal, on, noun) {
    const final = TERMINAL.includes(job.status) ? job : await watch(job.id, signal, (type, data) => {
      if (on[type]) on[type](data);
    });
    if (!final || signal.aborted) return null;
    if (on.status) on.status(final);
    if (final.status === "succeeded") return final;
    $("#run-message").textContent = "The " + (noun || "job") + " ended " + final.status + ".";
    if (final.error) {
      $("#run-error").hidden = false;
      $("#run-error-code").textContent = final.error.code;
      $("#run-error-message").textContent = final.error.message || "";
    }
    return null;
  };

  // ---- jobs ---------------------------------------------------------------------------------------------------------------------------
  pages.jobs = async function () {
    const sel = $("#f-kind");
    const params = new URLSearchParams(location.search);
    try {
      const kinds = (await RF.get("/v1/pipelines")).data.map((p) => p.kind).sort();
      kinds.forEach((k) => sel.append(new Option(k, k)));
    } catch (e) { /* the filter still works without the list */ }
    if (params.get("status")) $("#f-status").value = params.get("status");
    if (params.get("kind")) sel.value = params.get("kind");
    // Keep the filters in the address bar, so a filtered view can be bookmarked or shared.
    $("#job-filters").addEventListener("change", () => {
      const q = new URLSearchParams();
      for (const [k, v] of new FormData($("#job-filters"))) if (v && !(k === "limit" && v === "50")) q.set(k, String(v));
      history.replaceState(null, "", "/jobs" + (q.toString() ? "?" + q : ""));
    });
    if (params.get("status") || params.get("kind")) htmx.trigger("#jobs", "refresh");
  };

  // ---- job detail -------------------------------------------------------------------------------------------------------------------------
  function reusePages() {
    try { return JSON.parse(($("#job") || {}).dataset.reusePages || "{}"); } catch (e) { return {}; }
  }

  function jobView(job) {
    const v = Object.assign({}, job);
    v._pct = job.status === "succeeded" ? 100 : Math.round((job.progress.fraction || 0) * 100);
    v._active = ["queued", "running"].includes(job.status);
    v._retryable = ["failed", "dead", "cancelled"].includes(job.status);
    // The page that fills its form from a job of this kind (AppManifest.reuse), if any.
    const page = reusePages()[job.kind];
    v._reuse = page ? page + "?reuse=" + enc(job.id) : "";
    return v;
  }

  function timelineView(events) {
    if (!events.length) return [];
    const t = (e) => new Date(e.ts).getTime() / 1000;
    const dur = (e) => { const d = (e.details || {}).duration_s; return d == null || isNaN(Number(d)) ? null : Number(d); };
    // `ts` is when each event happened (a step's start or end on the worker), so a step's bar runs from its end
    // minus its duration to its end, placed on one axis for the whole execution.
    const t0 = Math.min(...events.map((e) => t(e) - (dur(e) || 0)));
    const range = Math.max(1e-6, Math.max(...events.map(t)) - t0);
    return events.map((e) => {
      const d = e.details || {};
      const span = dur(e);
      const v = Object.assign({}, e);
      v._offset = "+" + fmt.dur(Math.max(0, t(e) - t0));
      const type = e.type || "";
      v._tone = /Succeeded$/.test(type) ? "tl-ok" : /(Failed|Aborted|Dead|Cancelled)$/.test(type) ? "tl-bad"
        : /Retry|Caught|Resumed/.test(type) ? "tl-warn" : /(Entered|Started|Queued|Claimed)$/.test(type) ? "tl-run" : "";
      const parts = [];
      if (d.error) parts.push(d.error + (d.cause ? ": " + d.cause : ""));
      else if (d.cause) parts.push(d.cause);
      if (d.next) parts.push("next: " + d.next);
      if (d.interval_s != null) parts.push("retry in " + fmt.dur(d.interval_s));
      if (d.worker_id) parts.push("worker " + d.worker_id);
      if (type === "JobQueued" && d.credits != null) parts.push(d.credits + (d.credits === 1 ? " credit" : " credits") + " reserved");
      v._detail = parts.join(" · ");
      v._attempt = e.attempt > 1 ? e.attempt : "";
      if (span != null) {
        v._span = true;
        v._left = Math.max(0, Math.min(99.4, ((t(e) - span - t0) / range) * 100)).toFixed(2);
        v._width = Math.max(0.6, Math.min(100, (span / range) * 100)).toFixed(2);
        v._dur = fmt.dur(span);
      }
      return v;
    });
  }

  function assetRefs(outputs) {
    const ids = [];
    const walk = (o, key) => {
      if (o == null) return;
      if (typeof o === "string" && key && /(^|_)asset_id$/.test(key)) ids.push(o);
      else if (Array.isArray(o)) o.forEach((x) => walk(x, key && key.endsWith("asset_ids") ? "asset_id" : null));
      else if (typeof o === "object") Object.entries(o).forEach(([k, x]) => walk(x, k));
    };
    walk(outputs, null);
    return Array.from(new Set(ids));
  }

  /** Per asset id, the output object that names it ({asset_id, width, height, ...}): pipelines put an image's
   *  size next to its reference. */
  function assetFacts(outputs) {
    const facts = {};
    const walk = (o) => {
      if (Array.isArray(o)) o.forEach(walk);
      else if (o && typeof o === "object") {
        if (typeof o.asset_id === "string" && !facts[o.asset_id]) facts[o.asset_id] = o;
        Object.values(o).forEach(walk);
      }
    };
    walk(outputs);
    return facts;
  }

  pages.job = async function () {
    const box = $("#job");
    const id = box.dataset.jobId;
    let job;
    try {
      job = await RF.get("/v1/jobs/" + enc(id));
    } catch (e) {
      box.replaceChildren();
      const s = document.createElement("section");
      s.className = "card empty-state";
      const h = document.createElement("h2");
      h.textContent = e.status === 404 ? "Job not found" : "Could not load this job";
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = e.status === 404 ? "It does not exist, it expired, or it belongs to another account." : e.message;
      s.append(h, p);
      box.append(s);
      return;
    }
    let events = [];
    const paint = () => {
      RF.renderInto(box, "tpl-job-head", jobView(job));
      document.title = "Job " + job.id.slice(0, 8) + " · reelforge";
    };
    const paintHistory = () => {
      $("#job-history-card").hidden = false;
      RF.renderInto("#job-history", "tpl-tl-item", timelineView(events));
      setText("#job-history-count", events.length + " events");
    };
    const paintBody = async () => {
      $("#job-panels").hidden = false;
      $("#job-input").textContent = fmt.json(job.input);
      $("#copy-input").onclick = () => RF.copy(JSON.stringify(job.input, null, 2), "Input");
      const out = $("#job-outputs");
      if (!job.outputs) {
        out.innerHTML = "";
        const p = document.createElement("p");
        p.className = "muted";
        p.textContent = TERMINAL.includes(job.status) ? "This job produced no outputs." : "Outputs appear here when the job succeeds.";
        out.append(p);
        return;
      }
      const refs = assetRefs(job.outputs);
      const assets = (await Promise.all(refs.map((a) => RF.get("/v1/assets/" + enc(a)).catch(() => null)))).filter(Boolean);
      out.replaceChildren();
      const images = assets.filter((a) => (a.content_type || "").startsWith("image/"));
      const others = assets.filter((a) => !(a.content_type || "").startsWith("image/"));
      if (images.length) {
        const g = document.createElement("div");
        g.className = "outputs-grid";
        const described = assetFacts(job.outputs);
        images.forEach((a) => {
          const meta = Object.assign({}, a.metadata || {}, described[a.id] || {});
          const width = Number(meta.width) || 0, height = Number(meta.height) || 0;
          g.append(RF.render("tpl-output-image", {
            url: a.download ? a.download.url : "", filename: a.filename, content_type: a.content_type, size: a.size,
            width: width && height ? width : "", height: width && height ? height : "",
            pixel: width && width <= 128 ? "pixel" : "",
          }));
        });
        out.append(g);
      }
      if (others.length) {
        const list = document.createElement("div");
        list.className = "stack";
        list.style.marginTop = images.length ? "1rem" : "0";
        others.forEach((a) => list.append(RF.render("tpl-asset-link", { url: a.download ? a.download.url : "", filename: a.filename, content_type: a.content_type, size: a.size })));
        out.append(list);
      }
      const raw = document.createElement("details");
      raw.style.marginTop = "1rem";
      const sum = document.createElement("summary");
      sum.textContent = "Raw outputs";
      const pre = document.createElement("pre");
      pre.textContent = fmt.json(job.outputs);
      raw.append(sum, pre);
      out.append(raw);
    };
    paint();
    await paintBody();
    try {
      events = (await RF.get("/v1/jobs/" + enc(id) + "/history")).events;
    } catch (e) { events = []; }
    paintHistory();
    if (TERMINAL.includes(job.status)) return;

    const ctl = new AbortController();
    const seen = new Set(events.map((e) => [e.ts, e.type, e.path].join("|")));
    const final = await watch(id, ctl.signal, (type, data) => {
      if (type === "progress") {
        job.progress = { fraction: data.fraction, message: data.message || "" };
        if (data.status && data.status !== job.status) { job.status = data.status; paint(); return; }
        const pct = Math.round((data.fraction || 0) * 100);
        const bar = $("#job-bar");
        if (bar) { bar.setAttribute("aria-valuenow", String(pct)); bar.firstElementChild.style.width = pct + "%"; }
        setText("#job-pct", pct + "%");
        setText("#job-message", data.message || "");
      } else if (type === "status") {
        RF.get("/v1/jobs/" + enc(id)).then((j) => { job = j; paint(); }).catch(() => {});
      } else if (type === "history") {
        // The stream replays history from the start on each connection: keep each event once.
        const key = [data.ts, data.type, data.path].join("|");
        if (seen.has(key)) return;
        seen.add(key);
        events.push(Object.assign({ id: key, attempt: 0 }, data));
        events.sort((a, b) => new Date(a.ts) - new Date(b.ts));
        paintHistory();
      }
    });
    if (final) {
      job = final;
      paint();
      await paintBody();
      try { events = (await RF.get("/v1/jobs/" + enc(id) + "/history")).events; } catch (e) { /* keep streamed */ }
      paintHistory();
      RF.me(true).catch(() => {});
    }
  };

  // ---- uploads -----------------------------------------------------------------------------------------------------------------------------
  async function uploadOne(file, lifecycle) {
    const list = $("#upload-list");
    const frag = RF.render("tpl-upload-item", { name: file.name, size: file.size });
    const item = frag.firstElementChild;
    list.prepend(frag);
    const bar = $(".bar", item);
    const show = (loaded) => {
      const pct = file.size ? Math.floor((loaded / file.size) * 100) : 100;
      bar.setAttribute("aria-valuenow", String(pct));
      bar.firstElementChild.style.width = pct + "%";
      $("[data-upload-pct]", item).textContent = pct + "%";
    };
    try {
      await RF.upload(file, {
        lifecycle,
        onCreated: (up) => { if (up.parts && up.parts.length) $(".meta", item).append(" · " + up.parts.length + " parts"); },
        onProgress: show,
      });
      item.classList.add("done");
      show(file.size);
      $("[data-upload-pct]", item).textContent = "Uploaded";
      htmx.trigger("#assets", "refresh");
    } catch (e) {
      item.classList.add("failed");
      const err = $(".field-error", item);
      const fields = (e.problem && e.problem.errors) || [];
      err.textContent = fields.length ? fields.map((f) => (f.field ? f.field + ": " : "") + f.message).join("; ") : e.message;
      err.hidden = false;
      $("[data-upload-pct]", item).textContent = "Failed";
    }
  }

  pages.uploads = function () {
    const zone = $("#dropzone");
    const input = $("#files");
    const start = (files) => {
      const lifecycle = $("#lifecycle").value;
      Array.from(files).forEach((f) => uploadOne(f, lifecycle));
    };
    ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
    ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, () => zone.classList.remove("over")));
    zone.addEventListener("drop", (e) => { e.preventDefault(); if (e.dataTransfer) start(e.dataTransfer.files); });
    input.addEventListener("change", () => { start(input.files); input.value = ""; });
    document.addEventListener("click", async (e) => {
      const b = e.target.closest("[data-download-asset]");
      if (!b) return;
      try {
        const a = await RF.get("/v1/assets/" + enc(b.dataset.id));
        if (a.download) location.assign(a.download.url);
      } catch (err) { RF.toast(err.message, "bad"); }
    });
  };

  // ---- credits, webhooks ----------------------------------------------------------------------------------------------------------------------
  prepare.credits = function (d) {
    const ledger = d.ledger || [];
    const sum = (kinds) => ledger.filter((e) => kinds.includes(e.kind)).reduce((a, e) => a + e.amount, 0);
    $("#credit-balance").textContent = fmt.num(d.balance);
    $("#credit-spent").textContent = fmt.num(-sum(["reserve", "settle", "refund"]) || 0);  // never "-0"
    $("#credit-granted").textContent = fmt.num(sum(["grant", "purchase", "purchase_refund"]));
    ledger.forEach((e) => { e._tone = e.amount > 0 ? "pos" : e.amount < 0 ? "neg" : ""; });
    return d;
  };

  prepare.recent = function (d) {
    const data = (d.data || []).slice().sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    return { data: data.slice(0, 10) };
  };

  // ---- admin: overview --------------------------------------------------------------------------------------------------------------------------
  function pick(o, keys, dflt) {
    for (const k of keys) if (o && o[k] != null && o[k] !== "") return o[k];
    return dflt;
  }

  function alarmView(a) {
    const o = a || {};
    const when = pick(o, ["raised_at", "changed_at", "ts", "evaluated_at"], null);
    const value = o.value == null ? "" : Math.round(Number(o.value) * 100) / 100;
    let state = pick(o, ["event", "state"], null);
    if (state == null) state = o.enabled === false ? "disabled" : "ok";
    return Object.assign({}, o, {
      _name: pick(o, ["rule", "name", "key"], "alarm"),
      _severity: String(pick(o, ["severity"], o.state || "firing")).toLowerCase(),
      _message: pick(o, ["message"], "") || (value !== "" ? "value " + value + ", threshold " + o.threshold : ""),
      _description: pick(o, ["description"], ""),
      _condition: o.threshold == null ? "" : "≥ " + o.threshold + (o.unit ? " " + o.unit : "") + (o.window_s ? " over " + fmt.dur(o.window_s) : ""),
      _state: String(state).toLowerCase(),
      _since: when ? "since " + fmt.ago(when) : "",
      _when: when ? fmt.date(when) : "",
    });
  }

  pages.admin = async function () {
    const hoursSel = $("#stats-hours");
    const charts = async () => {
      const hours = hoursSel.value;
      let s;
      try { s = await RF.get("/v1/admin/stats?hours=" + enc(hours)); } catch (e) { RF.toast("Stats: " + e.message, "bad"); return; }
      const jph = s.jobs_per_hour || [];
      const total = (k) => jph.reduce((a, r) => a + (Number(r[k]) || 0), 0);
      const ok = total("succeeded"), bad = total("failed") + total("dead"), fin = ok + bad + total("cancelled");
      setText('[data-kpi="finished"]', fmt.num(fin));
      setText('[data-kpi="period"]', "in the last " + hours + " hours");
      setText('[data-kpi="success"]', ok + bad ? Math.round((ok / (ok + bad)) * 100) + "%" : "–");
      setText('[data-kpi="failed"]', fmt.num(bad));
      const qd = s.queue_depth || [];
      setText('[data-kpi="depth"]', qd.length ? fmt.num(qd[qd.length - 1].depth) : "–");
      setText('[data-kpi="credits"]', fmt.num((s.credits_used_per_hour || []).reduce((a, r) => a + (Number(r.credits) || 0), 0)));
      RF.barChart($("#chart-jobs"), jph, "hour", [
        { key: "succeeded", label: "succeeded", color: "var(--c2)" },
        { key: "failed", label: "failed", color: "var(--c3)" },
        { key: "cancelled", label: "cancelled", color: "var(--c4)" },
        { key: "dead", label: "dead", color: "var(--c5)" },
      ], { empty: "No finished jobs in this period" });
      RF.lineChart($("#chart-queue"), qd.map((p) => ({ ts: p.ts, value: p.depth })), { empty: "No queue samples yet", color: "var(--c1)" });
      RF.barChart($("#chart-credits"), s.credits_used_per_hour || [], "hour", [{ key: "credits", label: "credits", color: "var(--c6)" }],
        { empty: "No credits used in this period" });
      const rows = s.duration_by_kind || [];
      const slowest = Math.max(1e-9, ...rows.map((r) => Number(r.p95_s) || 0));
      rows.forEach((r) => { r._rel = Math.round(((Number(r.p95_s) || 0) / slowest) * 100); });
      RF.renderInto("#durations", "tpl-duration-row", rows);
      if (!rows.length) $("#durations").innerHTML = '<tr><td colspan="5" class="empty">No finished jobs in this period.</td></tr>';
    };
    const alarms = async () => {
      let a;
      try { a = await RF.get("/v1/admin/alarms"); } catch (e) { $("#alarms-active").textContent = e.message; return; }
      const active = (a.active || []).map(alarmView);
      const box = $("#alarms-active");
      box.replaceChildren();
      if (active.length) active.forEach((x) => box.append(RF.render("tpl-alarm-active", x)));
      else box.append(RF.render("tpl-alarms-clear", {}));
      const activeNames = new Set(active.map((x) => x._name));
      const rules = (a.rules || []).map(alarmView).map((r) => {
        if (activeNames.has(r._name)) r._state = "firing";
        return r;
      });
      RF.renderInto("#alarm-rules", "tpl-alarm-rule", rules);
      if (!rules.length) $("#alarm-rules").innerHTML = '<tr><td colspan="3" class="empty">No rules configured.</td></tr>';
      const recent = (a.recent || []).map(alarmView);
      RF.renderInto("#alarm-recent", "tpl-alarm-event", recent);
      if (!recent.length) $("#alarm-recent").innerHTML = '<tr><td colspan="4" class="empty">No alarm has fired recently.</td></tr>';
    };
    hoursSel.addEventListener("change", charts);
    let width = window.innerWidth;
    window.addEventListener("resize", () => { if (Math.abs(window.innerWidth - width) > 40) { width = window.innerWidth; charts(); } });
    await Promise.all([charts(), alarms()]);
    setInterval(alarms, 10000);
    setInterval(charts, 30000);
  };

  // ---- admin: users, queue, system -------------------------------------------------------------------------------------------------------------------
  pages["admin-users"] = function () {
    const search = $("#user-search");
    const apply = () => {
      const q = search.value.trim().toLowerCase();
      $$("#users tr[data-email]").forEach((tr) => { tr.hidden = !!q && !tr.dataset.email.toLowerCase().includes(q); });
    };
    search.addEventListener("input", apply);
    document.body.addEventListener("htmx:afterSettle", apply);
  };

  prepare.queue = function (q) {
    const depth = q.depth || [];
    const sum = (status) => depth.filter((d) => d.status === status).reduce((a, d) => a + d.count, 0);
    setText('[data-q="queued"]', fmt.num(sum("queued")));
    setText('[data-q="running"]', fmt.num(sum("running")));
    setText('[data-q="dead"]', fmt.num(sum("dead")));
    setText('[data-q="kinds"]', fmt.num(new Set(depth.filter((d) => ["queued", "running"].includes(d.status) && d.count).map((d) => d.kind)).size));
    setText('[data-q="oldest"]', !sum("queued") || q.oldest_queued_age_s == null ? "–" : fmt.dur(q.oldest_queued_age_s));
    RF.renderInto("#running", "tpl-running-row", q.running || [], { empty: "tpl-empty-running" });
    RF.renderInto("#depth", "tpl-depth-row", depth, { empty: "tpl-empty-depth" });
    RF.renderInto("#dead", "tpl-dead-row", q.dead || [], { empty: "tpl-empty-dead" });
    return q;
  };

  prepare.workers = function (d) {
    const list = Array.isArray(d) ? d : (d && d.data) || [];
    // "lost": no heartbeat for longer than a lease (or seen dead by its supervisor), whatever it last reported.
    list.forEach((w) => { w._stale = w.status === "lost" ? "bad" : ""; });
    return { data: list };
  };

  function kvRows(obj, prefix, out) {
    for (const [k, v] of Object.entries(obj || {})) {
      const key = prefix ? prefix + " " + k : k;
      if (v && typeof v === "object" && !Array.isArray(v)) kvRows(v, key, out);
      else out.push([key.replace(/_/g, " "), Array.isArray(v) ? v.join(", ") : /bytes$/.test(k) ? fmt.bytes(v) : String(v)]);
    }
    return out;
  }

  pages["admin-system"] = async function () {
    try {
      const s = await RF.get("/v1/admin/system");
      setText('[data-sys="version"]', s.version || "–");
      const st = s.storage || {};
      const w = s.workers || {};
      setText('[data-sys="assets"]', fmt.num(st.assets));
      setText('[data-sys="bytes"]', st.bytes != null ? fmt.bytes(st.bytes) + " stored" : "");
      setText('[data-sys="workers"]', fmt.num(w.total));
      setText('[data-sys="online"]', fmt.num(w.live));
      setText('[data-sys="lost"]', w.lost ? ", " + fmt.num(w.lost) + " lost" : "");
      const models = s.models || [];
      setText('[data-sys="models"]', fmt.num(models.filter((m) => m.available).length));
      setText('[data-sys="models-total"]', fmt.num(models.length));
      const rows = [["database", String(s.database || "–")]];
      kvRows(st, "storage", rows);
      kvRows(w, "workers", rows);
      const kv = $("#system-kv");
      kv.replaceChildren();
      rows.forEach(([k, v]) => {
        const dt = document.createElement("dt");
        dt.textContent = k;
        const dd = document.createElement("dd");
        dd.textContent = v;
        kv.append(dt, dd);
      });
    } catch (e) {
      RF.toast("System: " + e.message, "bad");
    }
  };
})();
