/* reelforge console: the upscale page (video.upscale / image.upscale). Upload by signed URL, submit, follow the
   job's server-sent events (progress, frames per second, chunks), then compare source and result. */
(function () {
  "use strict";
  const RF = (window.RF = window.RF || {});
  const pages = (RF.pages = RF.pages || {});
  const $ = (sel, root) => (root || document).querySelector(sel);
  const enc = encodeURIComponent;
  const TERMINAL = ["succeeded", "failed", "cancelled", "dead"];
  const MAX_BLOB_BYTES = 512 * 1024 * 1024;

  function setProgress(fraction, message, status) {
    const pct = Math.round(Math.max(0, Math.min(1, Number(fraction) || 0)) * 100);
    const bar = $("#run-bar");
    bar.setAttribute("aria-valuenow", String(pct));
    bar.firstElementChild.style.width = pct + "%";
    $("#run-pct").textContent = pct + "%";
    if (message) {
      $("#run-message").textContent = message;
      const m = /([\d.]+) fps/.exec(message);
      if (m) $("#run-fps").textContent = m[1] + " frames per second";
    }
    if (status) setStatus(status);
  }

  function setStatus(status) {
    const badge = $("#run-status");
    badge.className = "badge s-" + status;
    badge.textContent = status;
    $("#run-bar").className = "bar bar-lg bar-" + status + (TERMINAL.includes(status) ? "" : " live");
    $("#run-cancel").hidden = TERMINAL.includes(status);
  }

  // ---- chunks: one square per chunk, coloured by the job's history events ----
  function chunkCells(count) {
    const box = $("#chunks");
    if (box.childElementCount === count) return;
    box.replaceChildren();
    for (let i = 0; i < count; i++) {
      const c = document.createElement("span");
      c.title = "chunk " + (i + 1);
      c.dataset.state = "waiting";
      c.style.cssText = "width:18px;height:18px;border-radius:3px;background:var(--border,#ccc)";
      box.append(c);
    }
  }
  function chunkState(index, state) {
    const c = $("#chunks").children[index];
    // A reconnected event stream replays the history from the start: a finished chunk stays finished.
    if (!c || (c.dataset.state === "done" && state === "running")) return;
    c.dataset.state = state;
    c.title = "chunk " + (index + 1) + ": " + state;
    c.style.background = state === "done" ? "var(--ok,#2e9d5b)" : state === "running" ? "var(--accent,#3b6cf6)" : state === "failed" ? "var(--bad,#d33)" : "var(--border,#ccc)";
  }
  function onHistory(h) {
    if (!h || !h.path) return;
    if (h.type === "MapStateEntered" && h.path === "chunks") chunkCells((h.details || {}).items || 0);
    const m = /^chunks\/item\[(\d+)\]$/.exec(h.path);
    if (!m) return;
    const i = Number(m[1]);
    if (h.type === "MapIterationStarted") chunkState(i, "running");
    else if (h.type === "MapIterationSucceeded") chunkState(i, "done");
    else if (h.type === "MapIterationFailed") chunkState(i, "failed");
  }

  // Following a job (server-sent events, reconnects, polling fallback) is the console's shared RF.watch (pages.js).

  // ---- compare: synchronized players and a before/after slider on the paused frame ----
  function fmtTime(s) {
    s = Math.max(0, s || 0);
    return Math.floor(s / 60) + ":" + String(Math.floor(s % 60)).padStart(2, "0");
  }

  function drawFrame() {
    const before = $("#before"), after = $("#after");
    const isImage = !$("#before-img").hidden;
    const srcB = isImage ? $("#before-img") : before;
    const srcA = isImage ? $("#after-img") : after;
    const w = isImage ? srcA.naturalWidth : after.videoWidth;
    const h = isImage ? srcA.naturalHeight : after.videoHeight;
    if (!w || !h) return;
    for (const [cv, src] of [[$("#cv-before"), srcB], [$("#cv-after"), srcA]]) {
      cv.width = w;
      cv.height = h;
      const ctx = cv.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      try { ctx.drawImage(src, 0, 0, w, h); } catch (e) { /* not decoded yet */ }
    }
  }

  function split() {
    const v = Number($("#split").value);
    $("#cv-after").style.clipPath = "inset(0 0 0 " + v + "%)";
    $("#divider").style.left = v + "%";
  }

  // Object URLs of the players and pictures shown now, released when the next result replaces them.
  let compareUrls = [];

  function stopPlayers() {
    for (const v of [$("#before"), $("#after")]) {
      v.pause();
      v.removeAttribute("src");
      v.load();
    }
  }

  /** Wired once: the players follow each other (a seek of either moves the other; the result leads playback),
   * and the split view is redrawn whenever both rest on the same frame. */
  function wirePlayers() {
    const before = $("#before"), after = $("#after");
    // A seek this code started on a player: its `seeked` must not be sent back to the other one.
    const following = new WeakSet();
    const follow = (leader, follower) => {
      if (Math.abs(follower.currentTime - leader.currentTime) <= 0.04) return;
      following.add(follower);
      follower.currentTime = leader.currentTime;
    };
    const redraw = () => {
      if (after.paused && !after.seeking && !before.seeking && after.readyState >= 2 && before.readyState >= 2) drawFrame();
    };
    after.addEventListener("play", () => { follow(after, before); before.play().catch(() => {}); $("#play").textContent = "Pause"; });
    after.addEventListener("pause", () => { before.pause(); follow(after, before); $("#play").textContent = "Play"; redraw(); });
    for (const [self, other] of [[after, before], [before, after]]) {
      self.addEventListener("seeked", () => {
        if (following.has(self)) following.delete(self);
        else if (after.paused || self === after) follow(self, other);
        redraw();
      });
      self.addEventListener("loadeddata", redraw);
    }
    // A format the browser cannot open fails with an error; a video codec it cannot decode (H.265 in most
    // browsers without hardware decoding) loads as sound only, with no picture size.
    for (const v of [before, after]) {
      const unplayable = (why) => {
        if (!v.getAttribute("src")) return;
        const note = $("#compare-note");
        note.textContent = (v === after ? "The result" : "The source") + " cannot be shown in this browser (" + why +
          "): download it to compare in a video player.";
        note.hidden = false;
      };
      v.addEventListener("error", () => unplayable((v.error && v.error.message) || "unsupported format"));
      v.addEventListener("loadedmetadata", () => { if (!v.videoWidth) unplayable("its video codec is not supported"); });
    }
    after.addEventListener("ratechange", () => { before.playbackRate = after.playbackRate; });
    after.addEventListener("timeupdate", () => {
      if (!after.paused && !before.seeking && Math.abs(before.currentTime - after.currentTime) > 0.15) follow(after, before);
      if (after.duration) $("#seek").value = String(Math.round((after.currentTime / after.duration) * 1000));
      $("#time").textContent = fmtTime(after.currentTime) + " / " + fmtTime(after.duration);
    });
    $("#play").addEventListener("click", () => { if (after.paused) after.play().catch(() => {}); else after.pause(); });
    $("#seek").addEventListener("input", () => {
      if (!after.duration) return;
      after.pause();
      after.currentTime = (Number($("#seek").value) / 1000) * after.duration;
    });
  }

  function setupCompare(sourceUrl, resultUrl, isImage, urls) {
    for (const u of compareUrls) URL.revokeObjectURL(u);
    compareUrls = urls;
    $("#compare").hidden = false;
    $("#compare-note").hidden = true;
    const before = $("#before"), after = $("#after");
    $("#before-img").hidden = !isImage;
    $("#after-img").hidden = !isImage;
    before.hidden = isImage;
    after.hidden = isImage;
    $("#transport").hidden = isImage;
    $("#play").textContent = "Play";
    $("#seek").value = "0";
    $("#time").textContent = "0:00";
    if (isImage) {
      stopPlayers();
      let loaded = 0;
      const done = () => { if (++loaded === 2) drawFrame(); };
      $("#before-img").onload = done;
      $("#after-img").onload = done;
      $("#before-img").src = sourceUrl;
      $("#after-img").src = resultUrl;
      return;
    }
    // Same timeline for both: the job keeps every frame and timestamp of the source.
    before.src = sourceUrl;
    after.src = resultUrl;
  }

  pages.upscale = async function () {
    const form = $("#upscale-form");
    const sel = form.elements.model;
    const scaleSel = form.elements.scale;
    const note = $("#model-note");
    let models = [];
    try {
      models = (await RF.get("/v1/models?task=image.upscale")).data;
    } catch (e) {
      RF.toast(e.message, "bad");
    }
    models.sort((a, b) => Number(b.available) - Number(a.available));
    const byName = Object.fromEntries(models.map((m) => [m.name, m]));
    sel.replaceChildren();
    for (const m of models) {
      const speed = (m.details || {}).speed_class ? " · " + m.details.speed_class : "";
      const o = new Option(m.name + speed + (m.available ? "" : " · unavailable"), m.name);
      o.disabled = !m.available;
      sel.append(o);
    }
    if (!models.length) sel.append(new Option("No upscaling models registered", ""));
    const scales = () => {
      const m = byName[sel.value] || {};
      const list = ((m.details || {}).scales || [2, 3, 4]).map(Number);
      const keep = Number(scaleSel.value);
      scaleSel.replaceChildren(...list.map((s) => new Option("x" + s, String(s))));
      if (list.includes(keep)) scaleSel.value = String(keep);
      note.textContent = m.description ? m.description + (m.available ? "" : " (" + (m.reason || "unavailable") + ")") : "";
    };
    sel.addEventListener("change", scales);
    const first = models.find((m) => m.name === "realesr-animevideov3" && m.available) || models.find((m) => m.available);
    if (first) sel.value = first.name;
    scales();

    let running = null;
    RF.onSubmit(form, async (v) => {
      const file = form.elements.file.files[0];
      if (!file) throw new RF.ApiError(422, { detail: "Choose a video or an image", field: "file" });
      const isImage = (file.type || "").startsWith("image/");
      if (running) running.abort();
      const ctl = (running = new AbortController());
      $("#run").hidden = false;
      $("#compare").hidden = true;
      $("#after").pause();
      $("#run-error").hidden = true;
      $("#run-download").hidden = true;
      $("#chunks").replaceChildren();
      $("#run-fps").textContent = "";
      $("#run-title").textContent = file.name + " · " + v.model + " x" + v.scale;
      setStatus("queued");
      setProgress(0, "Uploading " + file.name + "…");
      // The bar stays for the job; the upload's progress is in the message.
      let asset;
      try {
        asset = await RF.upload(file, {
          signal: ctl.signal,
          onProgress: (sent, total) => setProgress(0, "Uploading… " + Math.floor((100 * sent) / (total || 1)) + "%"),
        });
      } catch (e) {
        if (ctl.signal.aborted) return; // a newer run replaced this one
        throw e;
      }
      const input = { asset_id: asset.id, model: v.model, scale: Number(v.scale) };
      let kind = "image.upscale";
      if (isImage) {
        input.format = v.format;
      } else {
        kind = "video.upscale";
        input.output = { video_codec: v.video_codec, crf: Number(v.crf), preset: v.preset };
        if (v.container) input.output.container = v.container;  // empty: the source's own kind
        if (v.chunk_seconds) input.chunk_seconds = Number(v.chunk_seconds);
      }
      const job = await RF.post("/v1/jobs", { kind, input });
      $("#cost").textContent = job.credits + (job.credits === 1 ? " credit" : " credits");
      $("#run-open").href = "/jobs/" + job.id;
      $("#run-cancel").onclick = async () => {
        try { await RF.post("/v1/jobs/" + enc(job.id) + "/cancel"); RF.toast("Cancellation requested"); } catch (e) { RF.toast(e.message, "bad"); }
      };
      setProgress(job.progress.fraction, "Waiting for a worker…", job.status);
      RF.me(true).catch(() => {});
      const final = await RF.followRun(job, ctl.signal, {
        progress: (d) => setProgress(d.fraction, d.message, d.status),
        status: (d) => setStatus(d.status),
        history: onHistory,
      });
      if (!final) return;
      const out = final.outputs || {};
      setProgress(1, "Done: " + out.width + "x" + out.height + (out.frames ? ", " + out.frames + " frames" : ""), "succeeded");
      if (out.frames_per_second) $("#run-fps").textContent = out.frames_per_second + " frames per second over the whole job";
      for (let i = 0; i < $("#chunks").childElementCount; i++) chunkState(i, "done");
      const result = await RF.get("/v1/assets/" + enc(out.asset_id));
      const link = $("#run-download");
      link.href = result.download ? result.download.url : "#";
      link.hidden = !result.download;
      let resultUrl = result.download ? result.download.url : "";
      if (resultUrl && result.size <= MAX_BLOB_BYTES) {
        // In memory, the result seeks frame by frame whatever the store (the local one serves no ranges).
        try {
          const r = await fetch(resultUrl);
          if (r.ok) resultUrl = URL.createObjectURL(await r.blob());
        } catch (e) { /* play it from the signed URL */ }
      }
      const sourceUrl = URL.createObjectURL(file);
      setupCompare(sourceUrl, resultUrl, isImage, [sourceUrl].concat(resultUrl.startsWith("blob:") ? [resultUrl] : []));
    });
    wirePlayers();
    $("#split").addEventListener("input", split);
    split();
  };
})();
