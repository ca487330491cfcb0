/* reelforge console: the film studio page. /film lists the projects; /film?project=<id> edits one: the script
   (saved as you type, then analysed: the breakdown follows), the characters (portrait upload, voice with a
   preview spoken by a worker), the scenes with their pictures, the render (film.render) followed per scene
   through the job's server-sent events, the finished film with its subtitles, and publishing to YouTube. */
(function () {
  "use strict";
  const RF = (window.RF = window.RF || {});
  const pages = (RF.pages = RF.pages || {});
  const $ = (sel, root) => (root || document).querySelector(sel);
  const enc = encodeURIComponent;
  const TERMINAL = ["succeeded", "failed", "cancelled", "dead"];
  const SAVE_DELAY_MS = 700;
  const RETURN_KEY = "reelforge.film.publish-return";

  const state = {
    id: null,
    project: null,
    readOnly: false,
    voices: null, // GET /v1/film/voices
    characters: [], // the working copy
    saving: null, // the script save in flight
    dirty: false,
    edits: 0,
    render: null, // the last render's outputs
    renderJob: null,
    scenes: [], // per-scene render state: {state, step}
    posters: {}, // scene index -> URL
    run: null, // AbortController of the job followed now
  };

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k === "dataset") Object.assign(e.dataset, v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function seconds(s) {
    s = Math.max(0, Number(s) || 0);
    if (s < 60) return s.toFixed(1) + " s";
    return Math.floor(s / 60) + " min " + String(Math.round(s % 60)).padStart(2, "0") + " s";
  }

  function problemText(err) {
    const p = (err && err.problem) || {};
    let msg = p.detail || p.title || (err && err.message) || String(err);
    const names = Array.isArray(p.names) ? p.names.filter((n) => !msg.includes(n)) : [];
    if (names.length) msg += " (" + names.join(", ") + ")";
    return msg;
  }

  function setBadge(node, text, status) {
    node.textContent = text;
    node.className = "badge" + (status ? " s-" + status : "");
  }

  async function assetUrl(id) {
    if (!id) return null;
    const a = await RF.get("/v1/assets/" + enc(id));
    return a.download ? a.download.url : null;
  }

  // ---- the project list ---------------------------------------------------------------------------------------
  async function showList() {
    $("#list-view").hidden = false;
    const list = $("#projects");
    const page = await RF.get("/v1/projects?limit=100");
    list.replaceChildren(...page.data.map((p) => el("li", { "data-project": p.id },
      el("a", { href: "/film?project=" + enc(p.id) },
        el("span", { class: "title", text: p.title }),
        el("span", { class: "small muted", text: p.script_format + " · " + p.counts.characters + " character" + (p.counts.characters === 1 ? "" : "s") }),
        el("span", { class: "badge" + (p.role === "owner" ? "" : " s-queued"), text: p.role })))));
    $("#projects-empty").hidden = page.data.length > 0;
    RF.onSubmit("#create-form", async (v) => {
      const body = { title: v.title, script_format: v.script_format || "auto" };
      if (v.script) body.script = v.script;
      const p = await RF.post("/v1/projects", body);
      location.assign("/film?project=" + enc(p.id));
    });
  }

  // ---- script: save as you type, then analyse ------------------------------------------------------------------
  function saveState(text, status) { setBadge($("#save-state"), text, status); }

  function scheduleSave() {
    if (state.readOnly) return;
    state.dirty = true;
    state.edits++;
    saveState("unsaved", "queued");
    clearTimeout(scheduleSave.timer);
    scheduleSave.timer = setTimeout(() => { saveScript().catch(() => {}); }, SAVE_DELAY_MS);
  }

  /** PATCH the script and its format, then analyse. A save that a newer edit overtook leaves the analysis to it. */
  async function saveScript() {
    if (state.saving) { await state.saving.catch(() => {}); if (!state.dirty) return; }
    clearTimeout(scheduleSave.timer);
    const edits = state.edits;
    const body = { script: $("#script").value, script_format: $("#script-format").value };
    saveState("saving…", "running");
    state.saving = RF.api("PATCH", "/v1/projects/" + enc(state.id), body);
    try {
      state.project = await state.saving;
      if (edits === state.edits) state.dirty = false;
      saveState(state.dirty ? "unsaved" : "saved", state.dirty ? "queued" : "succeeded");
      $("#script-note").textContent = state.project.script_bytes + " bytes · revision " + state.project.revision;
    } catch (e) {
      saveState("not saved", "failed");
      $("#script-note").textContent = (e.code ? e.code + ": " : "") + problemText(e);
      throw e;
    } finally {
      state.saving = null;
    }
    if (!state.dirty) await analyze();
  }

  async function analyze() {
    if (!($("#script").value || "").trim()) {
      showAnalysis(null, null);
      return;
    }
    setBadge($("#analysis-state"), "analysing…", "running");
    try {
      state.project = await RF.post("/v1/projects/" + enc(state.id) + "/analyze");
      showAnalysis(state.project.analysis, null);
    } catch (e) {
      showAnalysis(null, e);
    }
  }

  function showAnalysis(a, err) {
    const box = $("#analysis-error");
    box.hidden = !err;
    if (err) {
      $("#analysis-error-code").textContent = err.code || "error";
      $("#analysis-error-message").textContent = problemText(err);
      setBadge($("#analysis-state"), "error", "failed");
      $("#breakdown-summary").textContent = "The script cannot be broken down as it stands.";
      return; // the scenes of the last good breakdown stay on show
    }
    if (!a) {
      setBadge($("#analysis-state"), "–");
      $("#breakdown-summary").textContent = "Not analysed yet.";
      $("#totals").hidden = true;
      $("#proposed").hidden = true;
      renderScenes([]);
      return;
    }
    setBadge($("#analysis-state"), state.project && state.project.analysis_stale ? "stale" : "current", state.project && state.project.analysis_stale ? "queued" : "succeeded");
    const t = a.totals || {};
    $("#totals").hidden = false;
    $("#total-scenes").textContent = String(t.scenes || 0);
    $("#total-lines").textContent = String(t.dialogue_lines || 0);
    $("#total-seconds").textContent = seconds(t.estimated_seconds);
    $("#total-format").textContent = a.format + (a.requested_format === "auto" ? " (detected)" : "");
    $("#breakdown-summary").textContent = (a.title ? a.title + " · " : "") + (t.scenes || 0) + " scene" + (t.scenes === 1 ? "" : "s") + ", about " + seconds(t.estimated_seconds);
    const proposed = (a.proposed_characters || []).map((c) => c.name);
    $("#proposed").hidden = !proposed.length || state.readOnly;
    $("#proposed-names").textContent = proposed.join(", ");
    renderScenes(a.scenes || []);
  }

  // ---- scenes: the breakdown with each scene's picture and render state ----------------------------------------
  function renderScenes(scenes) {
    state.breakdownScenes = scenes;
    const list = $("#scenes");
    const urls = (state.project && state.project.asset_urls) || {};
    const count = Math.max(scenes.length, state.scenes.length);
    const items = [];
    for (let i = 0; i < count; i++) {
      const s = scenes[i] || { index: i, heading: null, characters: [], dialogue: [], estimated_seconds: null };
      const poster = state.posters[i];
      const bg = s.background && s.background.asset_id ? urls[s.background.asset_id] : null;
      const pic = poster || bg;
      const preview = el("div", { class: "preview" }, pic
        ? el("img", { src: pic, alt: (poster ? "Rendered poster of scene " : "Background of scene ") + (i + 1), "data-kind": poster ? "poster" : "background" })
        : el("span", { text: "picture chosen at render" }));
      const lines = (s.dialogue || []).length;
      const who = (s.characters || []).join(", ");
      const render = state.scenes[i] || {};
      const st = render.state || (state.renderJob ? "waiting" : "");
      items.push(el("li", { class: "film-scene", "data-index": String(i), "data-state": st || null }, preview,
        el("div", { class: "body" },
          el("span", { class: "heading", text: (i + 1) + ". " + (s.heading || "Scene " + (i + 1)) }),
          who ? el("span", { class: "small", text: who }) : null,
          el("span", { class: "small muted", text: lines + " line" + (lines === 1 ? "" : "s") + (s.estimated_seconds != null ? " · ~" + seconds(s.estimated_seconds) : "") + (s.mood ? " · " + s.mood : "") }),
          s.background ? el("span", { class: "small muted", text: "Background: " + s.background.name }) : null,
          st ? el("span", { class: "state", "data-state": st, text: st + (render.step && st === "running" ? ": " + render.step : "") }) : null,
          render.steps && render.steps.length ? el("span", { class: "steps small muted", text: render.steps.map((x, n) => x + (n < render.steps.length - 1 || st === "done" ? " ✓" : " …")).join("  ") }) : null)));
      const li = items[items.length - 1];
      if (render.seen) li.dataset.seen = render.seen.join(" ");
    }
    list.replaceChildren(...items);
    $("#scenes-empty").hidden = count > 0;
  }

  /** Scene i is now `st` (waiting, running, done, failed), at `step` (voices, visuals, sound) when known. Each
   * scene keeps the states it went through (`seen`) and the steps it ran (`steps`). */
  function sceneState(i, st, step) {
    const cur = state.scenes[i] || { seen: [], steps: [] };
    // A reconnected stream replays the history from the start: a finished scene stays finished.
    if (cur.state === "done" && st !== "failed") return;
    const seen = (cur.seen || []).slice();
    if (seen[seen.length - 1] !== st) seen.push(st);
    const steps = (cur.steps || []).slice();
    if (step && !steps.includes(step)) steps.push(step);
    state.scenes[i] = { state: st, step: step || (st === cur.state ? cur.step : null), seen, steps };
    renderScenes(state.breakdownScenes || []);
  }

  function onHistory(h) {
    if (!h || !h.path) return;
    if (h.type === "MapStateEntered" && h.path === "scenes") {
      const n = Number((h.details || {}).items) || 0;
      for (let i = 0; i < n; i++) if (!state.scenes[i]) state.scenes[i] = { state: "waiting", seen: ["waiting"], steps: [] };
      renderScenes(state.breakdownScenes || []);
      return;
    }
    let m = /^scenes\/item\[(\d+)\]$/.exec(h.path);
    if (m) {
      const i = Number(m[1]);
      if (h.type === "MapIterationStarted") sceneState(i, "running");
      else if (h.type === "MapIterationSucceeded") sceneState(i, "done");
      else if (h.type === "MapIterationFailed") sceneState(i, "failed");
      return;
    }
    m = /^scenes\/item\[(\d+)\]\/(\w+)$/.exec(h.path);
    if (m && h.type === "TaskStateEntered") sceneState(Number(m[1]), "running", m[2]);
  }

  // ---- characters ------------------------------------------------------------------------------------------------
  function voiceOptions(selected) {
    const v = state.voices || { data: [] };
    return v.data.map((x) => { const o = new Option(x.label, x.id); o.selected = x.id === selected; o.title = x.description; return o; });
  }

  function renderCharacters() {
    const list = $("#characters");
    const urls = (state.project && state.project.asset_urls) || {};
    const ranges = state.voices || {};
    list.replaceChildren(...state.characters.map((c, i) => {
      const voice = c.voice || {};
      const portrait = c.portraitUrl || (c.portrait_asset_id ? urls[c.portrait_asset_id] : null);
      const li = el("li", { class: "film-character", "data-index": String(i), "data-name": c.name },
        portrait ? el("img", { class: "portrait", src: portrait, alt: "Portrait of " + c.name })
          : el("div", { class: "portrait", "aria-hidden": "true" }),
        el("div", { class: "fields" },
          el("div", { class: "field" }, el("label", { for: "c-name-" + i, text: "Name" }), el("input", { id: "c-name-" + i, name: "name", value: c.name || "", maxlength: "80", "data-skip": true })),
          el("div", { class: "field" }, el("label", { for: "c-voice-" + i, text: "Voice" }), el("select", { id: "c-voice-" + i, name: "voice", "data-skip": true })),
          el("div", { class: "field" }, el("label", { for: "c-rate-" + i, text: "Rate" }), el("input", { id: "c-rate-" + i, name: "rate", type: "number", step: "0.05", min: String((ranges.rate || {}).min ?? 0.5), max: String((ranges.rate || {}).max ?? 2), value: String(voice.rate ?? 1), "data-skip": true })),
          el("div", { class: "field" }, el("label", { for: "c-pitch-" + i, text: "Pitch (semitones)" }), el("input", { id: "c-pitch-" + i, name: "pitch", type: "number", step: "0.5", min: String((ranges.pitch || {}).min ?? -12), max: String((ranges.pitch || {}).max ?? 12), value: String(voice.pitch ?? 0), "data-skip": true })),
          el("button", { class: "btn btn-sm", type: "button", "data-preview": String(i), text: "▶ Preview voice" })),
        el("div", { class: "actions" },
          el("label", { class: "upload small" }, "Portrait ", el("input", { type: "file", accept: "image/*", "data-portrait": String(i), "aria-label": "Portrait of " + c.name, "data-skip": true })),
          el("span", { class: "voice-note muted", "data-note": String(i), role: "status" }),
          el("button", { class: "btn btn-sm btn-ghost", type: "button", "data-remove": String(i), text: "Remove" })));
      li.querySelector("select").append(...voiceOptions(voice.id || (state.voices || {}).default));
      if (state.readOnly) li.querySelectorAll("input, select, [data-remove]").forEach((x) => { x.disabled = true; });
      return li;
    }));
    $("#characters-empty").hidden = state.characters.length > 0;
  }

  /** The working copy from the inputs (names, voices) as the API takes it. */
  function readCharacters() {
    $("#characters").querySelectorAll("li").forEach((li) => {
      const c = state.characters[Number(li.dataset.index)];
      c.name = li.querySelector("[name=name]").value.trim();
      c.voice = { id: li.querySelector("[name=voice]").value, rate: Number(li.querySelector("[name=rate]").value), pitch: Number(li.querySelector("[name=pitch]").value) };
    });
    return state.characters.map((c) => {
      const out = { name: c.name, aliases: c.aliases || [], description: c.description || "", voice: c.voice };
      if (c.portrait_asset_id) out.portrait_asset_id = c.portrait_asset_id;
      return out;
    });
  }

  async function saveCharacters() {
    const form = $("#characters-form");
    RF.clearErrors(form);
    try {
      state.project = await RF.api("PATCH", "/v1/projects/" + enc(state.id), { characters: readCharacters() });
      RF.toast("Characters saved");
      await analyze();
    } catch (e) {
      if (!(e instanceof RF.ApiError)) throw e;
      const box = form.querySelector(".form-error");
      box.querySelector("[data-msg]").textContent = (e.code ? e.code + ": " : "") + problemText(e);
      box.hidden = false;
    }
  }

  async function previewVoice(i) {
    readCharacters();
    const c = state.characters[i];
    const note = $('[data-note="' + i + '"]');
    const button = $('[data-preview="' + i + '"]');
    note.textContent = "Speaking…";
    button.disabled = true;
    try {
      const text = "Hello, I am " + (c.name || "a character") + ". This is how I sound.";
      const r = await RF.fetch("POST", "/v1/film/voices/" + enc(c.voice.id) + "/preview", { text, rate: c.voice.rate, pitch: c.voice.pitch });
      if (!r.ok) {
        let p = {};
        try { p = await r.json(); } catch (e) { /* not json */ }
        throw new RF.ApiError(r.status, p);
      }
      const blob = await r.blob();
      const audio = $("#preview-audio");
      if (audio.src && audio.src.startsWith("blob:")) URL.revokeObjectURL(audio.src);
      audio.dataset.voice = c.voice.id;
      audio.dataset.character = c.name;
      audio.dataset.engine = r.headers.get("X-Voice-Engine") || "";
      audio.src = URL.createObjectURL(blob);
      note.textContent = "Voice " + c.voice.id + " · " + (r.headers.get("X-Voice-Engine") || "?") + " · " + seconds(r.headers.get("X-Voice-Duration"));
      note.dataset.state = "played";
      audio.play().catch(() => { /* no sound device, or autoplay refused: the audio stays loaded */ });
    } catch (e) {
      note.textContent = (e.code ? e.code + ": " : "") + problemText(e);
      note.dataset.state = "error";
    } finally {
      button.disabled = false;
    }
  }

  async function uploadPortrait(i, file) {
    readCharacters();
    const note = $('[data-note="' + i + '"]');
    note.textContent = "Uploading the portrait…";
    try {
      const asset = await RF.upload(file, { lifecycle: "hot" });
      const c = state.characters[i];
      c.portrait_asset_id = asset.id;
      c.portraitUrl = URL.createObjectURL(file);
      renderCharacters();
      await saveCharacters();
    } catch (e) {
      note.textContent = (e.code ? e.code + ": " : "") + problemText(e);
    }
  }

  function wireCharacters() {
    const list = $("#characters");
    list.addEventListener("click", (e) => {
      const p = e.target.closest("[data-preview]");
      if (p) { previewVoice(Number(p.dataset.preview)); return; }
      const r = e.target.closest("[data-remove]");
      if (r) { readCharacters(); state.characters.splice(Number(r.dataset.remove), 1); renderCharacters(); }
    });
    list.addEventListener("change", (e) => {
      const f = e.target.closest("[data-portrait]");
      if (f && f.files[0]) uploadPortrait(Number(f.dataset.portrait), f.files[0]);
    });
    $("#add-character").addEventListener("click", () => {
      readCharacters();
      state.characters.push({ name: "", aliases: [], description: "", voice: { id: (state.voices || {}).default || "narrator", rate: 1, pitch: 0 } });
      renderCharacters();
      $("#c-name-" + (state.characters.length - 1)).focus();
    });
    $("#add-proposed").addEventListener("click", async () => {
      readCharacters();
      const a = (state.project && state.project.analysis) || {};
      const have = new Set(state.characters.map((c) => c.name.toLowerCase()));
      const ids = ((state.voices || {}).data || []).map((v) => v.id);
      (a.proposed_characters || []).forEach((p, n) => {
        if (have.has(p.name.toLowerCase())) return;
        // Cues are in capitals in a screenplay; the character is named as in prose (matching ignores case).
        const name = p.name === p.name.toUpperCase() ? p.name.toLowerCase().replace(/(^|[\s'-])(\p{L})/gu, (m, a, b) => a + b.toUpperCase()) : p.name;
        state.characters.push({ name, aliases: [], description: "", voice: { id: ids[(n + 1) % Math.max(1, ids.length)] || "narrator", rate: 1, pitch: 0 } });
      });
      renderCharacters();
      await saveCharacters();
    });
    $("#save-characters").addEventListener("click", saveCharacters);
  }

  // ---- render ----------------------------------------------------------------------------------------------------
  function setProgress(fraction, message, status) {
    const pct = Math.round(Math.max(0, Math.min(1, Number(fraction) || 0)) * 100);
    const bar = $("#run-bar");
    bar.setAttribute("aria-valuenow", String(pct));
    bar.firstElementChild.style.width = pct + "%";
    $("#run-pct").textContent = pct + "%";
    if (message) {
      $("#run-message").textContent = message;
      const m = /^scene (\d+)\/(\d+): (\w+)/.exec(message);
      if (m) sceneState(Number(m[1]) - 1, "running", m[3]);
    }
    if (status) setStatus(status);
  }

  function setStatus(status) {
    setBadge($("#run-status"), status, status);
    $("#run-bar").className = "bar bar-lg bar-" + status + (TERMINAL.includes(status) ? "" : " live");
    $("#run-cancel").hidden = TERMINAL.includes(status);
  }

  async function follow(job) {
    if (state.run) state.run.abort();
    const ctl = (state.run = new AbortController());
    state.renderJob = job.id;
    $("#run-open").href = "/jobs/" + enc(job.id);
    $("#run-open").hidden = false;
    $("#run-error").hidden = true;
    $("#run-cancel").onclick = async () => {
      try { await RF.post("/v1/jobs/" + enc(job.id) + "/cancel"); RF.toast("Cancellation requested"); } catch (e) { RF.toast(e.message, "bad"); }
    };
    setProgress(job.progress ? job.progress.fraction : 0, (job.progress && job.progress.message) || "Waiting for a worker…", job.status);
    renderScenes(state.breakdownScenes || []);
    const final = await RF.followRun(job, ctl.signal, {
      progress: (d) => setProgress(d.fraction, d.message, d.status),
      status: (d) => setStatus(d.status),
      history: onHistory,
    }, "render");
    if (!final) return;
    setProgress(1, (final.progress && final.progress.message) || "Done", "succeeded");
    await showFilm(final.outputs || {});
  }

  async function showFilm(out) {
    state.render = out;
    (out.scenes || []).forEach((s, i) => { if (!state.scenes[i] || state.scenes[i].state !== "done") sceneState(i, "done"); });
    const posters = await Promise.all((out.scenes || []).map((s) => assetUrl(s.poster_asset_id).catch(() => null)));
    state.posters = {};
    posters.forEach((u, i) => { if (u) state.posters[i] = u; });
    renderScenes(state.breakdownScenes || []);
    $("#scenes-note").textContent = "Posters of the last render (" + (out.scenes || []).length + " scenes).";
    const subs = (out.subtitles || {}).en || Object.values(out.subtitles || {})[0] || {};
    const [video, srt, vtt, thumb] = await Promise.all([out.video_asset_id, subs.srt_asset_id, subs.vtt_asset_id, out.thumbnail_asset_id].map((id) => assetUrl(id).catch(() => null)));
    const player = $("#player");
    player.replaceChildren();
    if (vtt) player.append(el("track", { kind: "subtitles", srclang: "en", label: "English", src: vtt, default: true }));
    if (thumb) player.poster = thumb;
    player.src = video || "";
    $("#player-card").hidden = false;
    const size = out.size || [];
    $("#player-facts").textContent = [seconds(out.duration_s), size.length ? size[0] + "×" + size[1] : null, out.aspect, out.fps ? out.fps + " fps" : null,
      out.loudness_lufs != null ? out.loudness_lufs + " LUFS" : null, "subtitles: " + (out.subtitles_mode || "none")].filter(Boolean).join(" · ");
    const links = [["MP4", video, "film.mp4"], ["SRT", srt, "subtitles.srt"], ["VTT", vtt, "subtitles.vtt"], ["Thumbnail", thumb, "thumbnail.jpg"]];
    $("#downloads").replaceChildren(...links.filter(([, u]) => u).map(([label, u, name]) => el("a", { class: "btn btn-sm", href: u, download: name, "data-download": label },
      el("span", { text: "⤓ " + label }))));
    $("#render-notes").replaceChildren(...(out.notes || []).slice(0, 8).map((n) => el("li", { text: n })));
  }

  function wireRender() {
    RF.onSubmit("#render-form", async (v) => {
      if (state.dirty || state.saving) await saveScript();
      state.scenes = [];
      state.posters = {};
      $("#player-card").hidden = true;
      const body = { aspect: v.aspect, height: Number(v.height), subtitles: v.subtitles, music: !!v.music };
      const job = await RF.post("/v1/projects/" + enc(state.id) + "/render", body);
      RF.me(true).catch(() => {});
      await follow(job);
    });
  }

  // ---- publish ---------------------------------------------------------------------------------------------------
  async function openPublish() {
    const dlg = $("#publish-dialog");
    const info = $("#yt-state");
    $("#publish-form").hidden = true;
    $("#yt-connect").hidden = true;
    $("#publish-result").hidden = true;
    $("#publish-status").hidden = true;
    info.textContent = "Checking YouTube…";
    dlg.dataset.state = "checking";
    if (!dlg.open) dlg.showModal();
    let yt = null;
    try {
      yt = await RF.get("/v1/film/youtube");
    } catch (e) {
      // 404 (no publishing on this server) or 503: the same for the user
      yt = { configured: false, connected: false, reason: e.status === 404 ? null : problemText(e) };
    }
    if (!yt.configured) {
      dlg.dataset.state = "not-configured";
      info.textContent = "YouTube publishing is not configured on this server." + (yt.reason ? " " + yt.reason : "") + " An administrator sets the YouTube API client (film settings) to turn it on.";
      return;
    }
    if (!yt.connected) {
      dlg.dataset.state = "not-connected";
      info.textContent = "No YouTube channel is connected to your account yet.";
      $("#yt-connect").hidden = false;
      return;
    }
    dlg.dataset.state = "connected";
    const ch = yt.channel || {};
    info.textContent = "Publishing to " + (ch.title || ch.name || "your channel") + ".";
    const form = $("#publish-form");
    form.hidden = false;
    if (!form.elements.title.value) form.elements.title.value = (state.project && state.project.title) || "";
    if (!form.elements.description.value) form.elements.description.value = (state.project && state.project.description) || "";
  }

  function wirePublish() {
    $("#open-publish").addEventListener("click", () => { openPublish().catch((e) => RF.toast(e.message, "bad")); });
    $("#close-publish").addEventListener("click", () => $("#publish-dialog").close());
    $("#yt-connect").addEventListener("click", async () => {
      try {
        const r = await RF.post("/v1/film/youtube/connect");
        // Google sends the browser back to /film: come back to this project's dialog then.
        sessionStorage.setItem(RETURN_KEY, state.id);
        location.assign(r.authorize_url);
      } catch (e) { $("#yt-state").textContent = (e.code ? e.code + ": " : "") + problemText(e); }
    });
    RF.onSubmit("#publish-form", async (v) => {
      const out = state.render;
      if (!out || !out.video_asset_id) throw new RF.ApiError(409, { code: "not_rendered", detail: "Render the film first: there is nothing to publish yet." });
      const subs = (out.subtitles || {}).en || {};
      const body = { video_asset_id: out.video_asset_id, title: v.title, privacy: v.privacy || "private" };
      if (out.thumbnail_asset_id) body.thumbnail_asset_id = out.thumbnail_asset_id;
      if (subs.srt_asset_id) body.captions_asset_id = subs.srt_asset_id;
      if (v.description) body.description = v.description;
      if (v.tags && v.tags.length) body.tags = v.tags;
      const job = await RF.post("/v1/projects/" + enc(state.id) + "/publish", body);
      const status = $("#publish-status");
      status.hidden = false;
      status.textContent = "Uploading to YouTube…";
      const final = await RF.watch(job.id, new AbortController().signal, (type, data) => {
        if (type === "progress" && data.message) status.textContent = data.message + " (" + Math.round((data.fraction || 0) * 100) + "%)";
      });
      if (!final || final.status !== "succeeded") {
        status.textContent = "Publishing ended " + (final ? final.status : "without an answer") + (final && final.error ? ": " + final.error.code + " " + (final.error.message || "") : "");
        return;
      }
      const o = final.outputs || {};
      status.textContent = "Published.";
      const a = $("#publish-url");
      a.href = o.url;
      a.textContent = o.url;
      $("#publish-result").hidden = false;
    });
  }

  // ---- one project -----------------------------------------------------------------------------------------------
  async function showProject(id) {
    state.id = id;
    let project;
    try {
      [project, state.voices] = await Promise.all([RF.get("/v1/projects/" + enc(id)), RF.get("/v1/film/voices")]);
    } catch (e) {
      RF.toast((e.code ? e.code + ": " : "") + problemText(e), "bad");
      await showList();
      return;
    }
    state.project = project;
    state.readOnly = project.role !== "owner";
    $("#project-view").hidden = false;
    $("#project-title").textContent = project.title;
    document.title = project.title + " · Film studio";
    $("#role-badge").hidden = !state.readOnly;
    const script = $("#script");
    script.value = project.script || "";
    script.readOnly = state.readOnly;
    $("#script-format").value = project.script_format || "auto";
    $("#script-format").disabled = state.readOnly;
    $("#script-note").textContent = project.script_bytes + " bytes · revision " + project.revision;
    for (const b of ["#add-character", "#save-characters", "#render", "#open-publish"]) $(b).disabled = state.readOnly;
    state.characters = (project.characters || []).map((c) => Object.assign({}, c, { voice: Object.assign({}, c.voice || {}) }));
    renderCharacters();
    showAnalysis(project.analysis, null);
    if ((!project.analysis || project.analysis_stale) && project.script && !state.readOnly) analyze();
    script.addEventListener("input", scheduleSave);
    $("#script-format").addEventListener("change", scheduleSave);
    wireCharacters();
    wireRender();
    wirePublish();
    if (project.last_render_job_id) {
      try {
        const job = await RF.get("/v1/jobs/" + enc(project.last_render_job_id));
        await follow(job);
      } catch (e) { /* the job expired: nothing to show */ }
    }
  }

  pages.film = async function () {
    const params = new URLSearchParams(location.search);
    let id = params.get("project");
    // Back from Google's consent (the YouTube callback redirects here): say how it went, reopen the project.
    const connected = params.get("youtube") === "connected";
    const failed = params.get("youtube_error");
    const back = connected || failed ? sessionStorage.getItem(RETURN_KEY) : null;
    if (connected) RF.toast("YouTube channel connected");
    if (failed) RF.toast("YouTube was not connected: " + failed, "bad");
    sessionStorage.removeItem(RETURN_KEY);
    if (!id && back) {
      id = back;
      history.replaceState(null, "", "/film?project=" + enc(id));
    }
    if (id) await showProject(id);
    else await showList();
    if (back && state.project && !state.readOnly) await openPublish();
    // Leaving with an edit not yet saved: save it now.
    window.addEventListener("beforeunload", () => { if (state.dirty && !state.readOnly) saveScript().catch(() => {}); });
  };
})();
