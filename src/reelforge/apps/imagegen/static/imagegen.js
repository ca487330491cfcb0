/* reelforge console: image generation (image.generate). The /generate page (model list, form, cost, live progress
   of the current run, the gallery of recent images with "Reuse") and the dashboard's "Latest images" card. */
(function () {
  "use strict";
  const RF = (window.RF = window.RF || {});
  const pages = (RF.pages = RF.pages || {});
  const cards = (RF.cards = RF.cards || []);
  const fmt = RF.fmt;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const TERMINAL = ["succeeded", "failed", "cancelled", "dead"];
  const enc = encodeURIComponent;

  // ---- images of jobs -------------------------------------------------------------------------------------------------
  /** Image cards for a finished image job: one signed URL per image from GET /v1/assets/{id}. */
  async function jobImages(job) {
    const out = job.outputs || {};
    const images = out.images || [];
    const cards = await Promise.all(images.map(async (img) => {
      try {
        const a = await RF.get("/v1/assets/" + enc(img.asset_id));
        return {
          job_id: job.id, url: a.download ? a.download.url : "", filename: a.filename || "image.png",
          prompt: out.prompt || (job.input || {}).prompt || "", width: img.width, height: img.height, seed: img.seed,
          model: out.model || (job.input || {}).model, pixel: img.width <= 128 ? "pixel" : "",
        };
      } catch (e) {
        return null;
      }
    }));
    return cards.filter(Boolean);
  }

  async function imageGallery(el, limit) {
    if (!el) return;
    try {
      const jobs = (await RF.get("/v1/jobs?kind=image.generate&status=succeeded&limit=" + Math.max(4, limit))).data;
      const cards = [];
      for (const batch of await Promise.all(jobs.map(jobImages))) cards.push(...batch);
      el.replaceChildren();
      if (!cards.length) {
        const p = document.createElement("p");
        p.className = "muted";
        p.textContent = "No images yet. Your generations will appear here.";
        el.append(p);
        return;
      }
      cards.slice(0, limit).forEach((c) => el.append(RF.render("tpl-image-card", c)));
    } catch (e) {
      el.textContent = e.message;
    }
  }

  // ---- the dashboard's card ------------------------------------------------------------------------------------------------------------
  cards.push(() => imageGallery($("#latest-images"), 4));

  // ---- the generate page ----------------------------------------------------------------------------------------------------------
  pages.generate = async function () {
    const form = $("#generate-form");
    const sel = form.elements.model;
    const note = $("#model-note");
    let models = [];
    try {
      models = (await RF.get("/v1/models?task=image.generate")).data;
    } catch (e) {
      RF.toast(e.message, "bad");
    }
    models.sort((a, b) => Number(b.available) - Number(a.available) || a.name.localeCompare(b.name));
    const byName = Object.fromEntries(models.map((m) => [m.name, m]));
    sel.replaceChildren();
    for (const m of models) {
      const label = m.name + (m.test_model ? " · test model" : "") + (m.available ? "" : " · not installed");
      const o = new Option(label, m.name);
      o.disabled = !m.available;
      sel.append(o);
    }
    if (!models.length) sel.append(new Option("No image models registered", ""));

    const describe = () => {
      const m = byName[sel.value];
      const unavailable = models.filter((x) => !x.available).length;
      note.textContent = m ? m.description + (unavailable ? " · " + unavailable + " more models are registered but need their weights installed." : "") : "";
      if (!models.some((x) => x.available)) note.textContent = "No image model can run on this server yet: " + ((models[0] || {}).reason || "");
    };
    const defaults = () => {
      const d = (byName[sel.value] || {}).details || {};
      if (d.default_width) form.elements.width.value = d.default_width;
      if (d.default_height) form.elements.height.value = d.default_height;
      if (d.default_steps) form.elements.steps.value = d.default_steps;
      if (d.default_guidance != null) form.elements.guidance_scale.value = d.default_guidance;
    };
    const cost = () => {
      const w = Number(form.elements.width.value) || 0, h = Number(form.elements.height.value) || 0;
      const s = Number(form.elements.steps.value) || 0, n = Number(form.elements.num_images.value) || 1;
      // Mirrors the pipeline's price: one credit per image per 512x512x25-step unit, at least one.
      const c = n * Math.max(1, Math.ceil((w * h * s) / (512 * 512 * 25)));
      $("#cost").textContent = c + (c === 1 ? " credit" : " credits");
    };
    sel.addEventListener("change", () => { defaults(); describe(); cost(); });
    form.addEventListener("input", cost);
    const first = models.find((m) => m.available);
    if (first) sel.value = first.name;
    defaults();
    describe();

    async function reuse(jobId, seed) {
      try {
        const job = await RF.get("/v1/jobs/" + enc(jobId));
        const input = Object.assign({}, job.input || {});
        if (seed) input.seed = seed;
        else if (input.seed == null && job.outputs && job.outputs.seed != null) input.seed = job.outputs.seed;
        for (const [k, v] of Object.entries(input)) {
          const el = form.elements.namedItem(k);
          if (el && v != null) el.value = v;
        }
        if (input.negative_prompt || input.seed != null) $("#advanced").open = true;
        describe();
        cost();
        return true;
      } catch (e) {
        RF.toast("Could not load that job's settings: " + e.message, "bad");
        return false;
      }
    }
    const params = new URLSearchParams(location.search);
    if (params.get("reuse")) await reuse(params.get("reuse"), params.get("seed"));
    cost();

    document.addEventListener("click", async (e) => {
      const a = e.target.closest("[data-reuse]");
      if (!a) return;
      e.preventDefault();
      if (await reuse(a.dataset.job, a.dataset.seed)) {
        window.scrollTo({ top: 0, behavior: "smooth" });
        form.elements.prompt.focus();
        RF.toast("Settings loaded: adjust them and generate");
      }
    });

    RF.onSubmit(form, async (v) => {
      const job = await RF.post("/v1/jobs", { kind: "image.generate", input: v });
      RF.me(true).catch(() => {});
      follow(job);
    });
    imageGallery($("#recent-images"), 12);
  };

  let running = null;

  function runProgress(fraction, message, status) {
    const pct = Math.round(Math.max(0, Math.min(1, Number(fraction) || 0)) * 100);
    const bar = $("#run-bar");
    bar.setAttribute("aria-valuenow", String(pct));
    bar.firstElementChild.style.width = pct + "%";
    $("#run-pct").textContent = pct + "%";
    if (message) $("#run-message").textContent = message;
    if (status) runStatus(status);
  }

  function runStatus(status) {
    const badge = $("#run-status");
    badge.className = "badge s-" + status;
    badge.textContent = status;
    $("#run-bar").classList.toggle("live", !TERMINAL.includes(status));
    $("#run-bar").className = "bar bar-lg bar-" + status + (TERMINAL.includes(status) ? "" : " live");
    $("#run-cancel").hidden = TERMINAL.includes(status);
  }

  async function follow(job) {
    if (running) running.abort();
    const ctl = (running = new AbortController());
    const card = $("#run");
    card.hidden = false;
    $("#run-prompt").textContent = (job.input || {}).prompt || "";
    $("#run-open").href = "/jobs/" + job.id;
    $("#run-error").hidden = true;
    $("#run-gallery").replaceChildren();
    $("#run-message").textContent = job.status === "queued" ? "Waiting for a worker…" : job.progress.message || "";
    runProgress(job.progress.fraction, null, job.status);
    $("#run-cancel").onclick = async () => {
      try { await RF.post("/v1/jobs/" + enc(job.id) + "/cancel"); RF.toast("Cancellation requested"); } catch (e) { RF.toast(e.message, "bad"); }
    };
    card.scrollIntoView({ behavior: "smooth", block: "nearest" });
    const final = await RF.watch(job.id, ctl.signal, (type, data) => {
      if (type === "progress") runProgress(data.fraction, data.message, data.status);
      else if (type === "status") runStatus(data.status);
    });
    if (!final || ctl.signal.aborted) return;
    runStatus(final.status);
    if (final.status === "succeeded") {
      runProgress(1, "Done in " + fmt.jobdur(final), "succeeded");
      const cards = await jobImages(final);
      cards.forEach((c) => $("#run-gallery").append(RF.render("tpl-image-card", c)));
      imageGallery($("#recent-images"), 12);
    } else {
      $("#run-message").textContent = "The job ended " + final.status + ".";
      if (final.error) {
        $("#run-error").hidden = false;
        $("#run-error-code").textContent = final.error.code;
        $("#run-error-message").textContent = final.error.message || "";
      }
    }
    RF.me(true).catch(() => {});
  }
})();
