// latentkit studio. Plain JavaScript, no build step: every button is one call on the REST API
// (the same API scripts use), run as a job whose progress streams over server-sent events.
"use strict";

const $ = (id) => document.getElementById(id);
// `jobs`: this page's queued and running jobs by id; `shown`: the one the progress row shows,
// which is the one Cancel cancels.
const state = { model: null, current: null, recipes: new Map(), jobs: new Map(), shown: null,
  morph: null, edits: [], mapPicks: [] };

// ---- API -------------------------------------------------------------------------------------

function fileUrl(id) { return `api/files/${encodeURIComponent(id)}`; }

// Seeds go up to 2**63 - 1, past what a JavaScript number holds exactly: integers beyond 2**53
// are read as BigInt (from the JSON's own digits) and written back as bare digits.
function parseJson(text) {
  return JSON.parse(text, (key, value, context) => (
    typeof value === "number" && !Number.isSafeInteger(value) && context
      && /^-?\d+$/.test(context.source) ? BigInt(context.source) : value));
}

function toJson(value, space) {
  const big = (key, v) => (typeof v !== "bigint" ? v
    : JSON.rawJSON ? JSON.rawJSON(v.toString()) : v.toString());
  return JSON.stringify(value, big, space);
}

// The message names its field once: pydantic's already start with it, many of ours mention it.
function errorText(data) {
  const message = data.error || `request failed (${data.status})`;
  const field = data.field;
  if (!field) return message;
  const escaped = field.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const named = new RegExp(`(^|\\W)${escaped}(\\W|$)`, "i").test(message);
  return named ? message : `${field}: ${message}`;
}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: toJson(body) };
  const r = await fetch(path, opts);
  const data = parseJson(await r.text());
  if (!r.ok) throw new Error(errorText(data));
  return data;
}

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

// Submit a job, follow its events (progress bar, live preview), resolve with its result.
async function runJob(path, body) {
  const job = await api(path, body);
  showNotices(job.notices);
  return followJob(job, true);
}

// Follow a job's events until it ends; `show` puts it in the progress row (a newly started
// job is shown; reattached ones only if nothing else is).
function followJob(job, show) {
  state.jobs.set(job.id, job);
  if (show || !state.shown) showJob(job);
  else showProgress(state.jobs.get(state.shown)); // its "+N more" counts this one now
  return new Promise((resolve, reject) => {
    const events = new EventSource(`api/jobs/${job.id}/events`);
    const update = (msg) => {
      const j = parseJson(msg.data);
      state.jobs.set(j.id, j);
      if (j.id === state.shown) showProgress(j);
      return j;
    };
    events.addEventListener("progress", update);
    events.addEventListener("end", (msg) => {
      events.close();
      const j = update(msg);
      state.jobs.delete(j.id);
      if (j.id === state.shown) showJob(state.jobs.values().next().value || null, j);
      else if (state.shown) showProgress(state.jobs.get(state.shown)); // one fewer "more"
      if (j.status === "done") resolve(j.result);
      else reject(new Error(j.error ? errorText(j.error) : `job ${j.status}`));
    });
    events.onerror = () => {
      if (events.readyState === EventSource.CLOSED) reject(new Error("lost the job's event stream"));
    };
  });
}

// Put `job` in the progress row (Cancel acts on it); none: the row shows how `last` ended.
function showJob(job, last = null) {
  state.shown = job ? job.id : null;
  $("cancel").disabled = !job;
  $("cancel").dataset.job = job ? job.id : "";
  if (job) showProgress(job);
  else if (last) showProgress(last);
}

function showProgress(j) {
  // A fast job may finish between two events: its last preview is still shown.
  if (j.preview_step > 0 && (j.status === "running" || j.status === "done")) {
    setSrc($("preview"), `api/jobs/${j.id}/preview?step=${j.preview_step}`);
  }
  const others = state.jobs.size - (state.jobs.has(j.id) ? 1 : 0);
  $("progress").max = Math.max(j.total, 1);
  $("progress").value = j.status === "done" ? $("progress").max : j.step;
  const steps = j.total ? ` ${j.step}/${j.total}` : "";
  $("progress-text").textContent = `${j.kind} ${j.status}${steps}${others ? ` (+${others} more)` : ""}`;
  $("progress-text").title = j.id;
}

// Jobs this server is running or has queued, e.g. started before the page was reloaded.
async function reattach() {
  const active = await api("api/jobs?active=true");
  for (const job of active) {
    if (state.jobs.has(job.id)) continue;
    followJob(job, false).then(refreshGallery).catch((e) => say(e.message, true));
  }
}

function cancelShown() {
  const id = $("cancel").dataset.job;
  if (id) api(`api/jobs/${id}/cancel`, {}).catch((e) => say(e.message, true));
}

function showNotices(notices) {
  $("notices").textContent = (notices || []).join(" ");
  $("notices").hidden = !(notices && notices.length);
}

// An <img> is shown only once it has something to show: no broken-image icons in empty panels.
function setSrc(img, url) {
  img.src = url;
  img.hidden = false;
}

// Run an action from a button: disable it meanwhile, report errors in the status line.
function action(buttonId, fn) {
  const button = $(buttonId);
  button.addEventListener("click", async () => {
    button.disabled = true;
    say("working...");
    try {
      await fn();
      say("done");
    } catch (e) {
      say(e.message, true);
    } finally {
      button.disabled = false;
    }
  });
}

// ---- gallery -----------------------------------------------------------------------------------

async function refreshGallery() {
  const items = await api("api/gallery?limit=120");
  const box = $("gallery");
  box.replaceChildren();
  for (const item of items) {
    state.recipes.set(item.id, item.recipe);
    const cell = document.createElement("div");
    cell.className = "item";
    const img = document.createElement("img");
    img.src = fileUrl(item.id);
    img.alt = item.recipe && item.recipe.prompt ? item.recipe.prompt : item.id;
    cell.dataset.kind = item.kind;
    if (item.kind === "upload") {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "upload";
      cell.append(badge);
    }
    img.title = img.alt;
    img.dataset.id = item.id;
    img.addEventListener("click", () => select(item.id));
    if (item.id === state.current) img.classList.add("selected");
    const ab = document.createElement("div");
    ab.className = "ab";
    for (const key of ["a", "b"]) {
      const b = document.createElement("button");
      b.textContent = key.toUpperCase();
      b.title = `use as interpolation keyframe ${key.toUpperCase()}`;
      b.addEventListener("click", () => { $(`key-${key}-kind`).value = "image"; $(`key-${key}`).value = item.id; });
      ab.append(b);
    }
    cell.append(img, ab);
    box.append(cell);
  }
}

function select(id) {
  state.current = id;
  for (const img of document.querySelectorAll("#gallery img, .thumbs img")) {
    img.classList.toggle("selected", img.dataset.id === id);
  }
  for (const img of document.querySelectorAll("img.current")) setSrc(img, fileUrl(id));
  const recipe = state.recipes.get(id);
  $("recipe").textContent = recipe ? toJson(recipe, 1) : "(no recipe)";
  $("reuse").disabled = !recipe || !("seed" in recipe);
  clearMask();
  resetOutpaint();
  $("amount").disabled = true;
}

function showResults(boxId, images) {
  const box = $(boxId);
  box.replaceChildren();
  for (const im of images) {
    state.recipes.set(im.id, im.recipe);
    const img = document.createElement("img");
    img.src = fileUrl(im.id);
    img.dataset.id = im.id;
    img.alt = (im.recipe && im.recipe.prompt) || im.id;
    img.addEventListener("click", () => select(im.id));
    box.append(img);
  }
  if (images.length) select(images[0].id);
}

function reuse() {
  const r = state.recipes.get(state.current);
  if (!r) return;
  $("prompt").value = r.prompt || "";
  $("negative").value = r.negative_prompt || "";
  $("seed").value = String(r.seed);
  $("seed-lock").checked = true;
  $("steps").value = r.steps;
  $("cfg").value = r.cfg;
  $("sampler").value = r.sampler;
  $("fast").checked = Boolean(state.model.fast && r.model === state.model.fast.model);
  if (r.width) $("size").value = `${r.width}x${r.height}`;
  showTab("generate");
}

async function uploadFile(blob, name, kind = "upload") {
  const form = new FormData();
  form.append("file", blob, name);
  const r = await fetch(`api/uploads?kind=${kind}`, { method: "POST", body: form });
  const data = parseJson(await r.text());
  if (!r.ok) throw new Error(errorText(data));
  return data;
}

// ---- text to image -----------------------------------------------------------------------------

function num(id) { return $(id).value === "" ? null : Number($(id).value); }

// A seed exactly as typed (a BigInt past 2**53); the server checks its range.
function seedOf(id) {
  const text = $(id).value.trim();
  if (text === "") return null;
  if (!/^\d+$/.test(text)) throw new Error(`seed: a whole number from 0 to 2^63-1, got ${text}`);
  return Number.isSafeInteger(Number(text)) ? Number(text) : BigInt(text);
}

function recipeFields() {
  const [width, height] = $("size").value.split("x").map(Number);
  return { negative_prompt: $("negative").value, seed: seedOf("seed"), steps: num("steps"),
    cfg: num("cfg"), sampler: $("sampler").value, width, height, n: num("batch") || 1,
    model: fastModel() };
}

// "fast" samples with the model's distilled student, a model of its own on the server.
function fastModel() {
  return state.model && state.model.fast && $("fast").checked ? state.model.fast.model : undefined;
}

function toggleFast() {
  const d = $("fast").checked ? state.model.fast : state.model.defaults;
  $("steps").value = d.steps;
  $("cfg").value = d.cfg;
}

function newSeed() { $("seed").value = String(Math.floor(Math.random() * 2 ** 31)); }

async function generate() {
  if (!$("seed-lock").checked) newSeed();
  const result = await runJob("api/generate", { prompt: $("prompt").value, ...recipeFields() });
  showResults("results", result.images);
  await refreshGallery();
}

// ---- img2img, inpaint, outpaint ----------------------------------------------------------------

function needCurrent() {
  if (!state.current) throw new Error("select or upload an image first");
  return state.current;
}

function sharedFields() {
  const f = recipeFields();
  return { seed: f.seed, steps: f.steps, cfg: f.cfg, sampler: f.sampler, model: f.model };
}

async function img2img() {
  const result = await runJob("api/img2img", { image: needCurrent(), prompt: $("i2i-prompt").value,
    strength: Number($("strength").value), keep_size: $("i2i-keep").checked, ...sharedFields() });
  showResults("img2img-results", result.images);
  await refreshGallery();
}

const mask = { drawing: false, ctx: null };
const MASK_INK = "rgb(255, 0, 160)"; // magenta: seen over white, black and most images alike
const STAGE = 256; // the longer side of the image being painted on, in CSS pixels

// The mask canvas takes the image's shape (longer side STAGE), so strokes land where they look.
function fitMaskCanvas() {
  const img = $("inpaint-image");
  const [w, h] = [img.naturalWidth || 1, img.naturalHeight || 1];
  const scale = STAGE / Math.max(w, h);
  const [width, height] = [Math.round(w * scale), Math.round(h * scale)];
  const wrap = $("inpaint-wrap");
  wrap.style.width = `${width}px`;
  wrap.style.height = `${height}px`;
  const canvas = $("mask-canvas");
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width; // resizing clears the strokes: they belonged to another image
    canvas.height = height;
  }
}

function setupMask() {
  const canvas = $("mask-canvas");
  mask.ctx = canvas.getContext("2d");
  $("inpaint-image").addEventListener("load", fitMaskCanvas);
  // Strokes join the pointer's positions with round lines, so a fast drag leaves no gaps.
  let last = null;
  const paint = (e) => {
    const r = canvas.getBoundingClientRect();
    const x = (e.clientX - r.left) * (canvas.width / r.width);
    const y = (e.clientY - r.top) * (canvas.height / r.height);
    const ctx = mask.ctx;
    ctx.globalCompositeOperation = $("eraser").checked ? "destination-out" : "source-over";
    ctx.strokeStyle = MASK_INK;
    ctx.lineWidth = Number($("brush").value);
    ctx.lineCap = "round";
    ctx.beginPath();
    ctx.moveTo(last ? last.x : x, last ? last.y : y);
    ctx.lineTo(x, y);
    ctx.stroke();
    last = { x, y };
  };
  canvas.addEventListener("pointerdown", (e) => {
    mask.drawing = true;
    last = null;
    canvas.setPointerCapture(e.pointerId);
    paint(e);
  });
  canvas.addEventListener("pointermove", (e) => { if (mask.drawing) paint(e); });
  canvas.addEventListener("pointerup", () => { mask.drawing = false; last = null; });
}

function clearMask() {
  if (mask.ctx) mask.ctx.clearRect(0, 0, $("mask-canvas").width, $("mask-canvas").height);
}

// The painted strokes at the image's own size, as the server reads masks: white = regenerate,
// black = keep, grey where a stroke's edge is soft (the ink's coverage, not its colour).
function maskBlob(width, height) {
  const out = document.createElement("canvas");
  out.width = width;
  out.height = height;
  const ctx = out.getContext("2d");
  ctx.drawImage($("mask-canvas"), 0, 0, width, height);
  const pixels = ctx.getImageData(0, 0, width, height);
  const d = pixels.data;
  for (let i = 0; i < d.length; i += 4) {
    d[i] = d[i + 1] = d[i + 2] = d[i + 3];
    d[i + 3] = 255;
  }
  ctx.putImageData(pixels, 0, 0);
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

async function inpaint() {
  const id = needCurrent();
  const img = $("inpaint-image");
  const blob = await maskBlob(img.naturalWidth, img.naturalHeight);
  const uploaded = await uploadFile(blob, "mask.png", "mask");
  const result = await runJob("api/inpaint", { image: id, mask: uploaded.id,
    prompt: $("inpaint-prompt").value, keep_size: $("inpaint-keep").checked, ...sharedFields() });
  showResults("inpaint-results", result.images);
  await refreshGallery();
}

const SIDES = ["left", "right", "top", "bottom"];
const OUTPAINT_SIDE = 128; // the longer side of the image in the outpaint frame, in CSS pixels

function cell() { return state.model ? state.model.latent_cell : 4; }

// The size the server will work on the image at (as ops/source.py's working_size): shrunk to
// fit the model's size, aspect kept, unless "keep size"; sides rounded to the latent cell.
function workingSize() {
  const img = $("outpaint-image");
  let [w, h] = [img.naturalWidth || state.model.image_size, img.naturalHeight || state.model.image_size];
  const scale = Math.min(state.model.image_size / w, state.model.image_size / h);
  if (!$("outpaint-keep").checked && scale < 1) {
    [w, h] = [Math.max(1, Math.round(w * scale)), Math.max(1, Math.round(h * scale))];
  }
  const c = cell();
  return [Math.max(c, Math.round(w / c) * c), Math.max(c, Math.round(h / c) * c)];
}

// CSS pixels per working pixel; the image is drawn at its working shape.
function outpaintScale() {
  const [w, h] = workingSize();
  const scale = OUTPAINT_SIDE / Math.max(w, h);
  const img = $("outpaint-image");
  img.style.width = `${Math.round(w * scale)}px`;
  img.style.height = `${Math.round(h * scale)}px`;
  return scale;
}

function drawOutpaintFrame() {
  const scale = outpaintScale();
  const v = Object.fromEntries(SIDES.map((s) => [s, Number($(`out-${s}`).value) * scale]));
  const frame = $("outpaint-frame");
  frame.style.padding = `${v.top}px ${v.right}px ${v.bottom}px ${v.left}px`;
}

function resetOutpaint() {
  for (const s of SIDES) $(`out-${s}`).value = 0;
  if (state.model) drawOutpaintFrame();
}

function setupOutpaint() {
  for (const s of SIDES) {
    $(`out-${s}`).step = cell();
    $(`out-${s}`).addEventListener("input", drawOutpaintFrame);
  }
  $("outpaint-image").addEventListener("load", drawOutpaintFrame);
  $("outpaint-keep").addEventListener("change", drawOutpaintFrame);
  for (const edge of document.querySelectorAll(".edge")) {
    const side = edge.dataset.side;
    let start = null;
    edge.addEventListener("pointerdown", (e) => {
      start = { x: e.clientX, y: e.clientY, value: Number($(`out-${side}`).value) };
      edge.setPointerCapture(e.pointerId);
    });
    edge.addEventListener("pointermove", (e) => {
      if (!start) return;
      const scale = outpaintScale();
      const delta = { left: start.x - e.clientX, right: e.clientX - start.x,
        top: start.y - e.clientY, bottom: e.clientY - start.y }[side] / scale;
      const max = 2 * Math.max(...workingSize());
      const px = Math.min(max, Math.max(0, Math.round((start.value + delta) / cell()) * cell()));
      $(`out-${side}`).value = px;
      drawOutpaintFrame();
    });
    edge.addEventListener("pointerup", () => { start = null; });
  }
}

async function outpaint() {
  const body = { image: needCurrent(), prompt: $("outpaint-prompt").value,
    keep_size: $("outpaint-keep").checked, ...sharedFields() };
  for (const s of SIDES) body[s] = Number($(`out-${s}`).value);
  const result = await runJob("api/outpaint", body);
  showResults("outpaint-results", result.images);
  await refreshGallery();
}

// ---- interpolation -----------------------------------------------------------------------------

function keyframe(which) {
  const kind = $(`key-${which}-kind`).value;
  const value = $(`key-${which}`).value;
  return kind === "seed" ? { seed: seedOf(`key-${which}`) } : { [kind]: value };
}

async function interpolate(keyframes = [keyframe("a"), keyframe("b")], animation = "gif") {
  const f = sharedFields();
  const body = { keyframes, frames: Number($("frames").value), animation,
    prompt: $("prompt").value, seed: f.seed, steps: f.steps, cfg: f.cfg, model: f.model };
  const result = await runJob("api/interpolate", body);
  if (animation === "mp4") {
    $("mp4-link").href = fileUrl(result.animation);
    $("mp4-link").hidden = false;
    return;
  }
  state.morph = { result, body };
  const scrub = $("scrub");
  scrub.max = result.frames.length - 1;
  scrub.value = 0;
  scrub.disabled = false;
  showFrame();
  $("gif-link").href = fileUrl(result.animation);
  $("gif-link").hidden = false;
  $("export-mp4").disabled = false;
  $("mp4-link").hidden = true;
}

function showFrame() {
  if (!state.morph) return;
  const i = Number($("scrub").value);
  setSrc($("morph-frame"), fileUrl(state.morph.result.frames[i]));
  $("scrub-out").textContent = `frame ${i + 1}/${state.morph.result.frames.length}`;
}

// ---- directions --------------------------------------------------------------------------------

const AMOUNTS = [-2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2];

async function refreshDirections(chosen) {
  const list = await api("api/directions");
  const select = $("direction");
  select.replaceChildren(...list.map((d) => new Option(`${d.name} (${d.kind})`, d.name)));
  if (chosen) select.value = chosen;
}

async function makeDirection() {
  const name = $("dir-name").value;
  const positive = [$("dir-pos").value];
  const negative = [$("dir-neg").value];
  await runJob("api/directions", { name, positive, negative });
  await refreshDirections(name);
}

async function edit() {
  if (!$("direction").value) throw new Error("direction: make or choose a direction first");
  const result = await runJob("api/edit", { image: needCurrent(), direction: $("direction").value,
    amounts: AMOUNTS, steps: sharedFields().steps, model: fastModel() });
  state.edits = result.images;
  $("amount").disabled = false;
  $("amount").max = AMOUNTS.length - 1;
  $("amount").value = AMOUNTS.indexOf(0);
  showEdit();
}

function showEdit() {
  const i = Number($("amount").value);
  if (!state.edits[i]) return;
  setSrc($("edited"), fileUrl(state.edits[i].id));
  $("amount-out").textContent = String(state.edits[i].amount);
}

// ---- latent map --------------------------------------------------------------------------------

async function buildMap() {
  const result = await runJob("api/map", { source: $("map-source").value,
    limit: Number($("map-limit").value), size: 512, thumb: 32 });
  const stage = $("map-stage");
  for (const p of stage.querySelectorAll(".point")) p.remove();
  setSrc($("atlas"), fileUrl(result.atlas));
  state.mapPicks = [];
  for (const p of result.points) {
    const dot = document.createElement("div");
    dot.className = "point";
    dot.style.left = `${p.x * 100}%`;
    dot.style.top = `${p.y * 100}%`;
    dot.title = p.caption;
    dot.addEventListener("mouseenter", () => { $("map-caption").textContent = p.caption || p.name; });
    dot.addEventListener("click", () => pickMapPoint(p, dot));
    stage.append(dot);
  }
}

async function pickMapPoint(point, dot) {
  dot.classList.add("picked");
  state.mapPicks.push(point);
  if (state.mapPicks.length < 2) return;
  const keys = state.mapPicks.map((p) => (p.id ? { image: p.id } : { prompt: p.caption }));
  state.mapPicks = [];
  for (const d of document.querySelectorAll(".point.picked")) d.classList.remove("picked");
  showTab("interpolate");
  say("interpolating between the two points...");
  try {
    await interpolate(keys);
    say("done");
  } catch (e) {
    say(e.message, true);
  }
}

// ---- video -------------------------------------------------------------------------------------

async function video() {
  const body = { prompt: $("vid-prompt").value, frames: num("vid-frames"), seed: seedOf("vid-seed"),
    steps: num("vid-steps"), cfg: num("vid-cfg") };
  if ($("vid-first").checked) body.image = needCurrent();
  const result = await runJob("api/video", body);
  setSrc($("video-clip"), fileUrl(result.video));
  $("video-link").href = fileUrl(result.video);
  $("video-link").hidden = false;
  $("video-info").textContent = `${result.frames} frames, seed ${result.recipe.seed}`;
}

// ---- tabs, keyboard, start-up ------------------------------------------------------------------

function showTab(name) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const p of document.querySelectorAll(".panel")) p.classList.toggle("active", p.id === `panel-${name}`);
}

async function start() {
  const model = await api("api/model");
  state.model = model;
  $("model-name").textContent = `model ${model.model} · ${model.image_size}px`;
  $("sampler").replaceChildren(...model.samplers.map((s) => new Option(s, s)));
  $("sampler").value = model.defaults.sampler;
  $("steps").value = model.defaults.steps;
  $("cfg").value = model.defaults.cfg;
  $("fast-label").hidden = !model.fast;
  const sizes = [1, 2].map((k) => model.image_size * k);
  $("size").replaceChildren(...sizes.map((s) => new Option(`${s}x${s}`, `${s}x${s}`)));
  document.querySelector('[data-tab="video"]').hidden = !model.video;
  if (model.video) {
    const d = model.video_model.defaults;
    $("vid-frames").value = d.frames;
    $("vid-steps").value = d.steps;
    $("vid-cfg").value = d.cfg;
  }
  newSeed();
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
  action("generate", generate);
  action("run-img2img", img2img);
  action("run-inpaint", inpaint);
  action("run-outpaint", outpaint);
  action("run-interpolate", () => interpolate());
  action("export-mp4", () => interpolate(state.morph.body.keyframes, "mp4"));
  action("make-direction", makeDirection);
  action("run-edit", edit);
  action("run-map", buildMap);
  action("run-video", video);
  $("new-seed").addEventListener("click", newSeed);
  $("fast").addEventListener("change", toggleFast);
  $("reuse").addEventListener("click", reuse);
  $("clear-mask").addEventListener("click", clearMask);
  $("strength").addEventListener("input", () => { $("strength-out").textContent = $("strength").value; });
  $("scrub").addEventListener("input", showFrame);
  $("amount").addEventListener("input", showEdit);
  $("cancel").addEventListener("click", cancelShown);
  // a typed seed is the seed wanted: keep it until "New seed" or unticking "keep"
  $("seed").addEventListener("input", () => { $("seed-lock").checked = true; });
  $("upload").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    try {
      const up = await uploadFile(file, file.name);
      await refreshGallery();
      select(up.id);
      say(`uploaded ${file.name}`);
    } catch (err) {
      say(err.message, true);
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      const active = document.querySelector(".panel.active button.primary");
      (active || $("generate")).click();
    }
  });
  setupMask();
  setupOutpaint();
  await refreshGallery();
  await refreshDirections();
  const first = document.querySelector("#gallery img");
  if (first) select(first.dataset.id);
  await reattach();
  say("ready");
}

start().catch((e) => say(`could not start: ${e.message}`, true));
