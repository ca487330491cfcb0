/* reelforge console: the rotoscoping editor (/roto). Pick or upload a video (RF.upload), scrub its frames, click to
   prompt objects (left click: part of it; right click or Alt+click: not part of it; drag: a box), see each frame's
   masks at once (the overlay PNG the worker draws), propagate with live progress (the job's event stream), play
   the result with its overlay, and download the exports. Everything comes from the public API. */
(function () {
  "use strict";
  const RF = (window.RF = window.RF || {});
  const pages = (RF.pages = RF.pages || {});
  const $ = (sel, root) => (root || document).querySelector(sel);
  const enc = encodeURIComponent;
  const TERMINAL = ["succeeded", "failed", "cancelled", "dead"];
  const DRAG_PX = 6; // a press that moves further than this (screen pixels) is a box, not a click
  const PLAY_AHEAD = 4; // frames requested ahead while playing
  const EXPORT_LABELS = {
    coco: "COCO RLE masks (JSON)",
    alpha_prores: "Alpha matte, ProRes 4444 (MOV)",
    alpha_webm: "Alpha matte, VP9 (WebM)",
    png_zip: "PNG sequence (ZIP)",
    greenscreen: "Green-screen preview (MP4)",
  };

  const state = {
    session: null, // SessionDetail
    frame: 0,
    selected: null, // object id the next prompt goes to (null: a new object)
    areas: {}, // object id -> mask pixels on the frame shown
    frameCtl: null,
    blobUrl: null,
    playing: false,
    drag: null,
    runCtl: null,
  };

  const base = () => "/v1/roto/sessions/" + enc(state.session.id);
  let palette = [];
  const colorOf = (id) => (palette.length ? palette[Number(id) % palette.length] : "#3b6cf6");
  const objectName = (o) => o.name || "Object " + o.object_id;

  // ---- frame display ---------------------------------------------------------------------------------------------
  function setFrameState(text, kind) {
    const b = $("#frame-state");
    b.textContent = text;
    b.className = "badge" + (kind ? " s-" + kind : "");
  }

  function frameLabel() {
    const s = state.session;
    const t = s.fps ? (state.frame / s.fps).toFixed(2) + " s" : "";
    $("#frame-label").textContent = "Frame " + state.frame + " / " + (s.frame_count - 1) + (t ? " · " + t : "");
    $("#scrubber").value = String(state.frame);
  }

  /** Show a picture of frame n (an overlay URL or a blob URL this page made). */
  function showPicture(url, n, isBlob) {
    const img = $("#frame-img");
    const old = state.blobUrl;
    state.blobUrl = isBlob ? url : null;
    return new Promise((resolve) => {
      img.onload = () => {
        if (old && old !== url) URL.revokeObjectURL(old);
        img.dataset.frame = String(n);
        resolve(true);
      };
      img.onerror = () => resolve(false);
      img.src = url;
    });
  }

  function applyMasks(answer) {
    state.areas = {};
    for (const m of answer.masks || []) state.areas[m.object_id] = m.area;
    renderObjects();
  }

  /** Frame n with every object's current mask: the masks (JSON) and the overlay the worker drew. */
  async function loadFrame(n) {
    const s = state.session;
    n = Math.max(0, Math.min(s.frame_count - 1, Math.round(Number(n) || 0)));
    state.frame = n;
    frameLabel();
    renderPrompts();
    drawMarks();
    if (state.frameCtl) state.frameCtl.abort();
    const ctl = (state.frameCtl = new AbortController());
    setFrameState("loading");
    try {
      const answer = await RF.get(base() + "/frames/" + n + "/masks", { signal: ctl.signal });
      if (ctl.signal.aborted) return;
      applyMasks(answer);
      await showPicture(answer.overlay.url, n, false);
      if (!ctl.signal.aborted) setFrameState("ready", "succeeded");
    } catch (e) {
      if (ctl.signal.aborted || (e && e.name === "AbortError")) return;
      setFrameState("error", "failed");
      RF.toast(e.message, "bad");
    }
  }

  // ---- marks: the prompts of this frame, and the box being dragged --------------------------------------------------
  function framePrompts() {
    return ((state.session && state.session.prompts) || []).filter((p) => p.frame === state.frame);
  }

  function drawMarks() {
    const s = state.session;
    const cv = $("#marks");
    if (!s) return;
    if (cv.width !== s.width || cv.height !== s.height) { cv.width = s.width; cv.height = s.height; }
    const ctx = cv.getContext("2d");
    ctx.clearRect(0, 0, cv.width, cv.height);
    const r = Math.max(3, Math.round(Math.min(s.width, s.height) / 90));
    ctx.lineWidth = Math.max(1, r / 2);
    for (const p of framePrompts()) {
      const colour = colorOf(p.object_id);
      if (p.box) {
        ctx.setLineDash([r * 1.5, r]);
        ctx.strokeStyle = colour;
        ctx.strokeRect(p.box[0], p.box[1], p.box[2] - p.box[0], p.box[3] - p.box[1]);
        ctx.setLineDash([]);
      }
      for (const pt of p.points || []) {
        ctx.beginPath();
        ctx.arc(pt.x, pt.y, r, 0, 2 * Math.PI);
        ctx.fillStyle = pt.label === 1 ? "#22c55e" : "#ef4444";
        ctx.fill();
        ctx.strokeStyle = "#ffffff";
        ctx.stroke();
      }
    }
    const d = state.drag;
    if (d && d.moved && d.button === 0) {
      ctx.setLineDash([r * 1.5, r]);
      ctx.strokeStyle = state.selected != null ? colorOf(state.selected) : "#ffffff";
      ctx.strokeRect(Math.min(d.x0, d.x1), Math.min(d.y0, d.y1), Math.abs(d.x1 - d.x0), Math.abs(d.y1 - d.y0));
      ctx.setLineDash([]);
    }
  }

  /** Pointer position in frame pixels (the picture is scaled to the card's width). */
  function toFrame(e) {
    const s = state.session;
    const rect = $("#marks").getBoundingClientRect();
    const x = ((e.clientX - rect.left) * s.width) / rect.width;
    const y = ((e.clientY - rect.top) * s.height) / rect.height;
    return [Math.max(0, Math.min(s.width - 0.01, x)), Math.max(0, Math.min(s.height - 0.01, y))];
  }

  function wireStage() {
    const cv = $("#marks");
    cv.addEventListener("contextmenu", (e) => e.preventDefault());
    cv.addEventListener("pointerdown", (e) => {
      if (!state.session || state.playing || (e.button !== 0 && e.button !== 2)) return;
      e.preventDefault();
      const [x, y] = toFrame(e);
      state.drag = { x0: x, y0: y, x1: x, y1: y, sx: e.clientX, sy: e.clientY, button: e.button, alt: e.altKey, moved: false };
      cv.setPointerCapture(e.pointerId);
    });
    cv.addEventListener("pointermove", (e) => {
      const d = state.drag;
      if (!d) return;
      [d.x1, d.y1] = toFrame(e);
      if (Math.hypot(e.clientX - d.sx, e.clientY - d.sy) > DRAG_PX) d.moved = true;
      if (d.moved) drawMarks();
    });
    const finish = (e) => {
      const d = state.drag;
      if (!d) return;
      state.drag = null;
      if (e.type === "pointercancel") { drawMarks(); return; }
      if (d.moved && d.button === 0) {
        const box = [Math.min(d.x0, d.x1), Math.min(d.y0, d.y1), Math.max(d.x0, d.x1), Math.max(d.y0, d.y1)];
        prompt({ points: [], box: box.map((v) => Math.round(v * 100) / 100) });
      } else {
        const label = d.button === 2 || d.alt || e.altKey ? 0 : 1;
        prompt({ points: [{ x: Math.round(d.x0 * 100) / 100, y: Math.round(d.y0 * 100) / 100, label }] });
      }
    };
    cv.addEventListener("pointerup", finish);
    cv.addEventListener("pointercancel", finish);
  }

  // ---- prompts and objects ---------------------------------------------------------------------------------------------
  let prompting = Promise.resolve();

  function prompt(body) {
    // One at a time, in order: each answer holds the frame's masks after that prompt.
    prompting = prompting.then(async () => {
      const n = state.frame;
      const sent = Object.assign({ frame: n }, body);
      if (state.selected != null) sent.object_id = state.selected;
      if (state.frameCtl) state.frameCtl.abort();
      setFrameState("segmenting", "running");
      try {
        const answer = await RF.post(base() + "/prompts", sent);
        if (answer.object_created && answer.prompt) state.selected = answer.prompt.object_id;
        await refreshSession();
        if (state.frame === n) {
          applyMasks(answer);
          await showPicture(answer.overlay.url, n, false);
          setFrameState("ready", "succeeded");
        }
      } catch (e) {
        setFrameState("error", "failed");
        RF.toast(e.message, "bad");
      }
      drawMarks();
    });
    return prompting;
  }

  async function refreshSession() {
    state.session = await RF.get(base());
    const ids = (state.session.objects || []).map((o) => o.object_id);
    if (state.selected != null && !ids.includes(state.selected)) state.selected = null;
    if (state.selected == null && ids.length) state.selected = ids[ids.length - 1];
    renderObjects();
    renderPrompts();
    renderRunState();
    drawMarks();
  }

  function renderObjects() {
    const list = $("#objects");
    const objects = (state.session && state.session.objects) || [];
    list.replaceChildren();
    for (const o of objects) {
      const li = document.createElement("li");
      li.dataset.objectId = String(o.object_id);
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", String(o.object_id === state.selected));
      li.tabIndex = 0;
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = colorOf(o.object_id);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = objectName(o);
      const area = document.createElement("span");
      area.className = "small muted area";
      const a = state.areas[o.object_id];
      area.textContent = a ? a.toLocaleString("en") + " px" : "no mask here";
      const del = document.createElement("button");
      del.type = "button";
      del.className = "icon-btn delete-object";
      del.setAttribute("aria-label", "Delete " + objectName(o));
      del.innerHTML = '<svg class="icon"><use href="#i-x"></use></svg>';
      del.addEventListener("click", (e) => { e.stopPropagation(); deleteObject(o); });
      li.append(sw, name, area, del);
      const select = () => { state.selected = o.object_id; renderObjects(); };
      li.addEventListener("click", select);
      li.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(); } });
      list.append(li);
    }
    list.setAttribute("role", "listbox");
    $("#objects-empty").hidden = objects.length > 0;
  }

  function renderPrompts() {
    const list = $("#prompts");
    const here = framePrompts();
    list.replaceChildren();
    for (const p of here) {
      const li = document.createElement("li");
      li.dataset.promptId = p.id;
      const sw = document.createElement("i");
      sw.style.cssText = "width:10px;height:10px;border-radius:3px;flex:none;background:" + colorOf(p.object_id);
      const text = document.createElement("span");
      const pos = (p.points || []).filter((q) => q.label === 1).length;
      const neg = (p.points || []).length - pos;
      const parts = [];
      if (pos) parts.push(pos + (pos === 1 ? " point" : " points"));
      if (neg) parts.push(neg + (neg === 1 ? " negative point" : " negative points"));
      if (p.box) parts.push("box");
      const o = ((state.session && state.session.objects) || []).find((x) => x.object_id === p.object_id);
      text.textContent = (o ? objectName(o) : "Object " + p.object_id) + ": " + parts.join(", ");
      const del = document.createElement("button");
      del.type = "button";
      del.className = "btn btn-sm btn-ghost delete-prompt";
      del.textContent = "Remove";
      del.addEventListener("click", () => deletePrompt(p));
      li.append(sw, text, del);
      list.append(li);
    }
    $("#prompts-empty").hidden = here.length > 0;
  }

  async function addObject() {
    try {
      const o = await RF.post(base() + "/objects", {});
      state.selected = o.object_id;
      await refreshSession();
    } catch (e) { RF.toast(e.message, "bad"); }
  }

  async function deleteObject(o) {
    if (!confirm("Delete " + objectName(o) + " with its prompts and masks?")) return;
    try {
      await RF.api("DELETE", base() + "/objects/" + enc(o.object_id));
      if (state.selected === o.object_id) state.selected = null;
      await refreshSession();
      await loadFrame(state.frame);
    } catch (e) { RF.toast(e.message, "bad"); }
  }

  async function deletePrompt(p) {
    try {
      await RF.api("DELETE", base() + "/prompts/" + enc(p.id));
      await refreshSession();
      await loadFrame(state.frame);
    } catch (e) { RF.toast(e.message, "bad"); }
  }

  // ---- playback: the frames with their overlays, one after the other ----------------------------------------------------
  async function play() {
    const s = state.session;
    if (state.playing) { state.playing = false; return; }
    state.playing = true;
    $("#play").textContent = "Pause";
    if (state.frameCtl) state.frameCtl.abort();
    const ctl = new AbortController();
    const ahead = new Map();
    const png = (k) => RF.fetch("GET", base() + "/frames/" + k, undefined, { signal: ctl.signal, headers: { Accept: "image/png" } })
      .then(async (r) => {
        if (!r.ok) {
          let p = null;
          try { p = await r.json(); } catch (e) { /* not json */ }
          throw new RF.ApiError(r.status, p);
        }
        return URL.createObjectURL(await r.blob());
      });
    let n = state.frame >= s.frame_count - 1 ? 0 : state.frame;
    const interval = 1000 / Math.max(1, Math.min(60, s.fps || 24));
    const started = performance.now();
    let shown = 0;
    let last = 0;
    setFrameState("playing", "running");
    try {
      while (state.playing && n < s.frame_count) {
        for (let k = n; k < Math.min(s.frame_count, n + PLAY_AHEAD); k++) if (!ahead.has(k)) ahead.set(k, png(k));
        const url = await ahead.get(n);
        ahead.delete(n);
        const wait = last + interval - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        if (!state.playing) { URL.revokeObjectURL(url); break; }
        await showPicture(url, n, true);
        last = performance.now();
        state.frame = n;
        frameLabel();
        renderPrompts();
        drawMarks();
        shown++;
        n++;
      }
      const secs = (performance.now() - started) / 1000;
      const note = $("#play-note");
      note.textContent = "Played " + shown + " frames at " + (shown / Math.max(secs, 0.001)).toFixed(1) + " frames per second.";
      note.hidden = false;
    } catch (e) {
      if (!(e && e.name === "AbortError")) RF.toast(e.message, "bad");
    } finally {
      ctl.abort();
      for (const p of ahead.values()) p.then((u) => URL.revokeObjectURL(u)).catch(() => {});
      state.playing = false;
      $("#play").textContent = "Play";
      setFrameState("ready", "succeeded");
    }
    // The masks' areas of the frame it stopped on.
    loadFrame(state.frame);
  }

  // ---- propagation, progress and exports ---------------------------------------------------------------------------------
  function setProgress(fraction, message, status) {
    const pct = Math.round(Math.max(0, Math.min(1, Number(fraction) || 0)) * 100);
    const bar = $("#run-bar");
    bar.setAttribute("aria-valuenow", String(pct));
    bar.firstElementChild.style.width = pct + "%";
    $("#run-pct").textContent = pct + "%";
    if (message) $("#run-message").textContent = message;
    if (status) setStatus(status);
  }

  function setStatus(status) {
    const badge = $("#run-status");
    badge.className = "badge s-" + status;
    badge.textContent = status;
    $("#run-bar").className = "bar bar-lg bar-" + status + (TERMINAL.includes(status) ? "" : " live");
    $("#run-cancel").hidden = TERMINAL.includes(status);
  }

  function renderRunState() {
    const s = state.session;
    const prompted = (s.prompts || []).length > 0;
    $("#propagate").disabled = !prompted;
    if (!prompted && !(s.propagation && s.propagation.job_id)) $("#run-message").textContent = "Prompt at least one object first.";
    else if ($("#run-status").textContent === "not run") {
      $("#run-message").textContent = s.propagation && s.propagation.stale ? "The prompts changed since the last propagation." : "Ready to propagate.";
    }
  }

  async function follow(job) {
    if (state.runCtl) state.runCtl.abort();
    const ctl = (state.runCtl = new AbortController());
    $("#run-open").href = "/jobs/" + job.id;
    $("#run-open").hidden = false;
    $("#run-error").hidden = true;
    $("#run-cancel").onclick = async () => {
      try { await RF.post("/v1/jobs/" + enc(job.id) + "/cancel"); RF.toast("Cancellation requested"); } catch (e) { RF.toast(e.message, "bad"); }
    };
    setProgress((job.progress || {}).fraction || 0, "Waiting for a worker…", job.status);
    const final = await RF.followRun(job, ctl.signal, {
      progress: (d) => setProgress(d.fraction, d.message, d.status),
      status: (d) => setStatus(d.status),
    });
    if (!final) return;
    const out = final.outputs || {};
    setProgress(1, "Done: " + (out.frames || 0) + " frames, " + ((out.objects || []).length) + " object(s).", "succeeded");
    await showExports(out.exports || []);
    await refreshSession();
    loadFrame(state.frame);
  }

  async function showExports(outputs) {
    const list = $("#exports");
    list.replaceChildren();
    $("#exports-card").hidden = outputs.length === 0;
    const objects = (state.session && state.session.objects) || [];
    for (const o of outputs) {
      const li = document.createElement("li");
      li.dataset.kind = o.kind;
      const text = document.createElement("span");
      const who = o.object_id == null ? "all objects" : objectName(objects.find((x) => x.object_id === o.object_id) || { object_id: o.object_id });
      text.textContent = (EXPORT_LABELS[o.kind] || o.kind) + " · " + who + " · " + RF.fmt.bytes(o.size);
      const a = document.createElement("a");
      a.className = "btn btn-sm";
      a.textContent = "Download";
      a.setAttribute("download", o.filename || "");
      try {
        const asset = await RF.get("/v1/assets/" + enc(o.asset_id));
        if (asset.download) a.href = asset.download.url;
        if (asset.filename) a.setAttribute("download", asset.filename);
      } catch (e) {
        a.removeAttribute("href");
        a.textContent = "Unavailable";
      }
      li.append(text, a);
      list.append(li);
    }
  }

  function wirePropagate() {
    RF.onSubmit($("#propagate-form"), async () => {
      const form = $("#propagate-form");
      const exports = Array.from(form.querySelectorAll("input[name=exports]:checked"), (c) => c.value);
      if (!exports.length) throw new RF.ApiError(422, { detail: "Choose at least one export", field: "exports" });
      const body = { exports, per_object: $("#per-object").checked };
      const a = $("#range-start").value, b = $("#range-end").value;
      if (a !== "" || b !== "") body.range = { start: Number(a || 0), end: Number(b === "" ? state.session.frame_count - 1 : b) };
      $("#exports-card").hidden = true;
      setStatus("queued");
      setProgress(0, "Queued…");
      const job = await RF.post(base() + "/propagate", body);
      RF.me(true).catch(() => {});
      follow(job);
    });
  }

  // ---- opening a session -------------------------------------------------------------------------------------------------
  async function openSession(id) {
    state.playing = false;
    if (state.runCtl) state.runCtl.abort();
    state.session = { id };
    state.selected = null;
    state.areas = {};
    await refreshSession();
    const s = state.session;
    history.replaceState(null, "", "/roto?session=" + enc(s.id));
    $("#video-facts").hidden = false;
    $("#fact-name").textContent = s.name || s.id;
    $("#fact-size").textContent = s.width + "×" + s.height + (s.video && s.video.rotation ? " (turned " + s.video.rotation + "°)" : "");
    $("#fact-frames").textContent = s.frame_count + " at " + Number(s.fps).toFixed(2) + " fps, " + Number(s.duration_s).toFixed(2) + " s";
    $("#editor-title").textContent = s.name || "Frame";
    $("#scrubber").max = String(s.frame_count - 1);
    $("#range-start").max = $("#range-end").max = String(s.frame_count - 1);
    $("#range-start").placeholder = "0";
    $("#range-end").placeholder = String(s.frame_count - 1);
    for (const el of ["#editor", "#objects-card", "#propagate-card"]) $(el).hidden = false;
    $("#exports-card").hidden = true;
    setStatus("not run");
    setProgress(0, "");
    $("#run-open").hidden = true;
    renderRunState();
    const first = (s.prompts || []).length ? s.prompts[0].frame : 0;
    await loadFrame(first);
    const job = s.propagation && s.propagation.job_id;
    if (job) {
      try { follow(await RF.get("/v1/jobs/" + enc(job))); } catch (e) { /* the job is gone: nothing to show */ }
    }
  }

  async function fillPickers() {
    try {
      const sessions = (await RF.get("/v1/roto/sessions?limit=50")).data;
      const sel = $("#session-pick");
      sel.replaceChildren(new Option(sessions.length ? "Choose a session…" : "No session yet", ""));
      for (const s of sessions) sel.append(new Option((s.name || s.id) + " · " + s.width + "×" + s.height + " · " + s.frame_count + " frames", s.id));
    } catch (e) { RF.toast(e.message, "bad"); }
    try {
      const assets = (await RF.get("/v1/assets?limit=100")).data.filter((a) => (a.content_type || "").startsWith("video/"));
      const sel = $("#asset");
      sel.replaceChildren(new Option(assets.length ? "Choose a video…" : "No video uploaded yet", ""));
      for (const a of assets) sel.append(new Option((a.filename || a.id) + " · " + RF.fmt.bytes(a.size), a.id));
    } catch (e) { RF.toast(e.message, "bad"); }
  }

  function wireOpen() {
    const form = $("#open-form");
    const createFor = async (assetId, name) => {
      const s = await RF.post("/v1/roto/sessions", { asset_id: assetId, name: name || undefined });
      await openSession(s.id);
      fillPickers();
    };
    RF.onSubmit(form, async () => {
      const id = $("#asset").value;
      if (!id) throw new RF.ApiError(422, { detail: "Choose a video", field: "asset" });
      const opt = $("#asset").selectedOptions[0];
      await createFor(id, opt ? opt.textContent.split(" · ")[0] : "");
    });
    $("#file").addEventListener("change", async () => {
      const file = $("#file").files[0];
      if (!file) return;
      RF.clearErrors(form);
      const bar = $("#upload-bar");
      bar.hidden = false;
      const setBar = (pct) => { bar.setAttribute("aria-valuenow", String(pct)); bar.firstElementChild.style.width = pct + "%"; };
      setBar(0);
      $("#upload-note").textContent = "Uploading " + file.name + "…";
      try {
        const asset = await RF.upload(file, {
          onProgress: (sent, total) => {
            const pct = Math.floor((100 * sent) / (total || 1));
            setBar(pct);
            $("#upload-note").textContent = "Uploading " + file.name + "… " + pct + "%";
          },
        });
        $("#upload-note").textContent = file.name + " is up; opening it…";
        await createFor(asset.id, file.name);
        $("#upload-note").textContent = file.name + " is open.";
      } catch (e) {
        $("#upload-note").textContent = "MP4, MOV, MKV or WebM; it opens as soon as it is up.";
        if (e instanceof RF.ApiError) RF.showProblem(form, e);
        else RF.toast(e.message || String(e), "bad");
      } finally {
        bar.hidden = true;
      }
    });
    $("#session-pick").addEventListener("change", () => {
      const id = $("#session-pick").value;
      if (id) openSession(id).catch((e) => RF.toast(e.message, "bad"));
    });
  }

  function wireEditor() {
    let timer = null;
    $("#scrubber").addEventListener("input", () => {
      state.playing = false;
      state.frame = Number($("#scrubber").value);
      frameLabel();
      clearTimeout(timer);
      timer = setTimeout(() => loadFrame(state.frame), 60);
    });
    $("#prev").addEventListener("click", () => { state.playing = false; loadFrame(state.frame - 1); });
    $("#next").addEventListener("click", () => { state.playing = false; loadFrame(state.frame + 1); });
    $("#play").addEventListener("click", () => play());
    $("#add-object").addEventListener("click", addObject);
    document.addEventListener("keydown", (e) => {
      if (!state.session || !state.session.frame_count || e.altKey || e.ctrlKey || e.metaKey) return;
      const t = e.target;
      if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
      if (e.key === "ArrowLeft") { e.preventDefault(); loadFrame(state.frame - 1); }
      else if (e.key === "ArrowRight") { e.preventDefault(); loadFrame(state.frame + 1); }
    });
    wireStage();
  }

  pages.roto = async function () {
    try { palette = JSON.parse($("#objects-card").dataset.palette || "[]"); } catch (e) { palette = []; }
    wireOpen();
    wireEditor();
    wirePropagate();
    const params = new URLSearchParams(location.search);
    let open = params.get("session");
    if (!open && params.get("reuse")) {
      try { open = ((await RF.get("/v1/jobs/" + enc(params.get("reuse")))).input || {}).session_id; } catch (e) { RF.toast(e.message, "bad"); }
    }
    await fillPickers();
    if (open) {
      try { await openSession(open); } catch (e) { RF.toast(e.message, "bad"); }
    }
  };
})();
