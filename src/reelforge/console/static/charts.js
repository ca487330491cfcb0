/* Small inline-SVG charts for the admin overview: stacked bars and an area line. No library. */
(function () {
  "use strict";
  const RF = (window.RF = window.RF || {});
  const NS = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) {
      const v = attrs[k];
      // CSS variables (theme colours) work in style, not reliably in presentation attributes.
      if ((k === "fill" || k === "stroke") && String(v).startsWith("var(")) e.style[k] = v;
      else e.setAttribute(k, v);
    }
    if (parent) parent.append(e);
    return e;
  }

  /** A round axis: {max, step} with at most ~5 steps of 1, 2 or 5 x 10^k (never below 1: counts are whole). */
  function niceScale(v) {
    const raw = Math.max(v, 1) / 4;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const n = raw / p;
    const step = Math.max(1, (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * p);
    return { max: Math.max(step, Math.ceil(Math.max(v, 1) / step) * step), step };
  }

  function toDate(v) {
    if (v == null) return null;
    if (typeof v === "number") return new Date(v < 1e12 ? v * 1000 : v);
    return new Date(v);
  }

  function label(v) {
    const d = toDate(v);
    return d && !isNaN(d) ? d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" }) : String(v);
  }

  function frame(container, height) {
    container.replaceChildren();
    const width = Math.max(280, container.clientWidth || 600);
    const pad = { l: 40, r: 10, t: 10, b: 24 };
    const svg = el("svg", { viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "img" }, container);
    return { svg, width, height, pad, w: width - pad.l - pad.r, h: height - pad.t - pad.b };
  }

  function yAxis(f, scale, fmt) {
    const g = el("g", { class: "axis" }, f.svg);
    const max = scale.max;
    for (let v = 0; v <= max + 1e-9; v += scale.step) {
      const y = f.pad.t + f.h - (v / max) * f.h;
      el("line", { x1: f.pad.l, x2: f.width - f.pad.r, y1: y, y2: y, class: v === 0 ? "baseline grid-line" : "grid-line" }, g);
      const t = el("text", { x: f.pad.l - 6, y: y + 4, "text-anchor": "end" }, g);
      t.textContent = fmt ? fmt(v) : (Math.round(v * 10) / 10).toLocaleString("en-US");
    }
  }

  function xLabels(f, labels, xOf) {
    const g = el("g", { class: "axis" }, f.svg);
    const every = Math.max(1, Math.ceil(labels.length / Math.max(2, Math.floor(f.w / 70))));
    labels.forEach((lab, i) => {
      if (i % every) return;
      const t = el("text", { x: xOf(i), y: f.height - 6, "text-anchor": "middle" }, g);
      t.textContent = lab;
    });
  }

  function legend(container, series) {
    const box = document.createElement("div");
    box.className = "legend";
    series.forEach((s) => {
      const span = document.createElement("span");
      const i = document.createElement("i");
      i.style.background = s.color;
      span.append(i, document.createTextNode(s.label));
      box.append(span);
    });
    container.append(box);
  }

  function empty(container, text) {
    container.replaceChildren();
    const d = document.createElement("div");
    d.className = "chart-empty";
    d.textContent = text || "No data for this period yet";
    container.append(d);
  }

  /** rows: [{...}], x: key of the label, series: [{key, label, color}] stacked. */
  RF.barChart = function (container, rows, x, series, opts) {
    opts = opts || {};
    if (!rows || !rows.length) return empty(container, opts.empty);
    const f = frame(container, opts.height || 220);
    const totals = rows.map((r) => series.reduce((s, se) => s + (Number(r[se.key]) || 0), 0));
    const scale = niceScale(Math.max.apply(null, totals));
    const max = scale.max;
    yAxis(f, scale, opts.yFormat);
    const slot = f.w / rows.length;
    const bw = Math.max(2, Math.min(28, slot * 0.7));
    const xOf = (i) => f.pad.l + slot * i + slot / 2;
    rows.forEach((r, i) => {
      let acc = 0;
      const g = el("g", {}, f.svg);
      const tip = el("title", {}, g);
      tip.textContent = label(r[x]) + "\n" + series.map((s) => s.label + ": " + (Number(r[s.key]) || 0)).join("\n");
      series.forEach((s) => {
        const v = Number(r[s.key]) || 0;
        if (!v) return;
        const h = (v / max) * f.h;
        const y = f.pad.t + f.h - ((acc + v) / max) * f.h;
        el("rect", { x: xOf(i) - bw / 2, y: y, width: bw, height: Math.max(1, h), rx: 2, fill: s.color }, g);
        acc += v;
      });
      // A transparent column so the tooltip also shows over empty hours.
      el("rect", { x: f.pad.l + slot * i, y: f.pad.t, width: slot, height: f.h, fill: "transparent" }, g);
    });
    xLabels(f, rows.map((r) => label(r[x])), xOf);
    if (series.length > 1 || opts.legend) legend(container, series);
  };

  /** points: [{ts, value}] as an area line. */
  RF.lineChart = function (container, points, opts) {
    opts = opts || {};
    if (!points || !points.length) return empty(container, opts.empty);
    const f = frame(container, opts.height || 220);
    const scale = niceScale(Math.max.apply(null, points.map((p) => Number(p.value) || 0)));
    const max = scale.max;
    yAxis(f, scale, opts.yFormat);
    const n = points.length;
    const xOf = (i) => f.pad.l + (n === 1 ? f.w / 2 : (f.w * i) / (n - 1));
    const yOf = (v) => f.pad.t + f.h - ((Number(v) || 0) / max) * f.h;
    const line = points.map((p, i) => (i ? "L" : "M") + xOf(i).toFixed(1) + " " + yOf(p.value).toFixed(1)).join(" ");
    const color = opts.color || "var(--c1)";
    el("path", { d: line + " L" + xOf(n - 1).toFixed(1) + " " + (f.pad.t + f.h) + " L" + xOf(0).toFixed(1) + " " + (f.pad.t + f.h) + " Z",
                 fill: color, "fill-opacity": "0.12", stroke: "none" }, f.svg);
    el("path", { d: line, fill: "none", stroke: color, "stroke-width": 2, "stroke-linejoin": "round" }, f.svg);
    points.forEach((p, i) => {
      const c = el("circle", { cx: xOf(i), cy: yOf(p.value), r: n > 60 ? 0 : 2.5, fill: color }, f.svg);
      const t = el("title", {}, c);
      t.textContent = label(p.ts) + ": " + p.value;
    });
    xLabels(f, points.map((p) => label(p.ts)), xOf);
  };
})();
