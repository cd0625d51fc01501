// latentkit studio. Plain JavaScript, no build step: every button is one call on the REST API
// (the same API scripts use), run as a job whose progress streams over server-sent events.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: null, current: null, recipes: new Map(), job: null, morph: null, edits: [],
  mapPicks: [] };

// ---- API -------------------------------------------------------------------------------------

function fileUrl(id) { return `api/files/${encodeURIComponent(id)}`; }

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  const data = await r.json();
  if (!r.ok) throw new Error(data.field ? `${data.field}: ${data.error}` : data.error);
  return data;
}

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

// Submit a job, follow its events (progress bar, live preview), resolve with its result.
async function runJob(path, body) {
  const job = await api(path, body);
  state.job = job.id;
  $("cancel").disabled = false;
  setProgress(0, 0, "queued");
  return new Promise((resolve, reject) => {
    const events = new EventSource(`api/jobs/${job.id}/events`);
    const update = (msg) => {
      const j = JSON.parse(msg.data);
      setProgress(j.step, j.total, j.status);
      // A fast job may finish between two events: its last preview is still shown.
      if (j.preview_step > 0 && (j.status === "running" || j.status === "done")) {
        $("preview").src = `api/jobs/${j.id}/preview?step=${j.preview_step}`;
      }
      return j;
    };
    events.addEventListener("progress", update);
    events.addEventListener("end", (msg) => {
      events.close();
      const j = update(msg);
      state.job = null;
      $("cancel").disabled = true;
      if (j.status === "done") resolve(j.result);
      else reject(new Error(j.error ? j.error.error : `job ${j.status}`));
    });
    events.onerror = () => {
      if (events.readyState === EventSource.CLOSED) reject(new Error("lost the job's event stream"));
    };
  });
}

function setProgress(step, total, status) {
  $("progress").max = Math.max(total, 1);
  $("progress").value = status === "done" ? $("progress").max : step;
  $("progress-text").textContent = total ? `${status} ${step}/${total}` : status;
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
  for (const img of document.querySelectorAll("img.current")) img.src = fileUrl(id);
  const recipe = state.recipes.get(id);
  $("recipe").textContent = recipe ? JSON.stringify(recipe, null, 1) : "(no recipe)";
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
  $("seed").value = r.seed;
  $("seed-lock").checked = true;
  $("steps").value = r.steps;
  $("cfg").value = r.cfg;
  $("sampler").value = r.sampler;
  if (r.width) $("size").value = `${r.width}x${r.height}`;
  showTab("generate");
}

async function uploadFile(blob, name, kind = "upload") {
  const form = new FormData();
  form.append("file", blob, name);
  const r = await fetch(`api/uploads?kind=${kind}`, { method: "POST", body: form });
  const data = await r.json();
  if (!r.ok) throw new Error(`${data.field}: ${data.error}`);
  return data;
}

// ---- text to image -----------------------------------------------------------------------------

function recipeFields() {
  const num = (id) => ($(id).value === "" ? null : Number($(id).value));
  const [width, height] = $("size").value.split("x").map(Number);
  return { negative_prompt: $("negative").value, seed: num("seed"), steps: num("steps"),
    cfg: num("cfg"), sampler: $("sampler").value, width, height, n: num("batch") || 1 };
}

function newSeed() { $("seed").value = Math.floor(Math.random() * 2 ** 31); }

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
  return { seed: f.seed, steps: f.steps, cfg: f.cfg, sampler: f.sampler };
}

async function img2img() {
  const result = await runJob("api/img2img", { image: needCurrent(), prompt: $("i2i-prompt").value,
    strength: Number($("strength").value), ...sharedFields() });
  showResults("img2img-results", result.images);
  await refreshGallery();
}

const mask = { drawing: false, ctx: null };

function setupMask() {
  const canvas = $("mask-canvas");
  mask.ctx = canvas.getContext("2d");
  // Strokes join the pointer's positions with round lines, so a fast drag leaves no gaps.
  let last = null;
  const paint = (e) => {
    const r = canvas.getBoundingClientRect();
    const x = (e.clientX - r.left) * (canvas.width / r.width);
    const y = (e.clientY - r.top) * (canvas.height / r.height);
    const ctx = mask.ctx;
    ctx.globalCompositeOperation = $("eraser").checked ? "destination-out" : "source-over";
    ctx.strokeStyle = "#fff";
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

function clearMask() { if (mask.ctx) mask.ctx.clearRect(0, 0, 256, 256); }

// The painted strokes, drawn at the image's own size: white = regenerate, black = keep.
function maskBlob(width, height) {
  const out = document.createElement("canvas");
  out.width = width;
  out.height = height;
  const ctx = out.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, width, height);
  ctx.drawImage($("mask-canvas"), 0, 0, width, height);
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

async function inpaint() {
  const id = needCurrent();
  const img = $("inpaint-image");
  const blob = await maskBlob(img.naturalWidth, img.naturalHeight);
  const uploaded = await uploadFile(blob, "mask.png", "mask");
  const result = await runJob("api/inpaint", { image: id, mask: uploaded.id,
    prompt: $("inpaint-prompt").value, ...sharedFields() });
  showResults("inpaint-results", result.images);
  await refreshGallery();
}

const SIDES = ["left", "right", "top", "bottom"];

function cell() { return state.model ? state.model.latent_cell : 4; }

function drawOutpaintFrame() {
  const img = $("outpaint-image");
  const scale = 128 / (img.naturalWidth || state.model.image_size);
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
  for (const edge of document.querySelectorAll(".edge")) {
    const side = edge.dataset.side;
    let start = null;
    edge.addEventListener("pointerdown", (e) => {
      start = { x: e.clientX, y: e.clientY, value: Number($(`out-${side}`).value) };
      edge.setPointerCapture(e.pointerId);
    });
    edge.addEventListener("pointermove", (e) => {
      if (!start) return;
      const img = $("outpaint-image");
      const scale = 128 / (img.naturalWidth || state.model.image_size);
      const delta = { left: start.x - e.clientX, right: e.clientX - start.x,
        top: start.y - e.clientY, bottom: e.clientY - start.y }[side] / scale;
      const max = 2 * (img.naturalWidth || state.model.image_size);
      const px = Math.min(max, Math.max(0, Math.round((start.value + delta) / cell()) * cell()));
      $(`out-${side}`).value = px;
      drawOutpaintFrame();
    });
    edge.addEventListener("pointerup", () => { start = null; });
  }
}

async function outpaint() {
  const body = { image: needCurrent(), prompt: $("outpaint-prompt").value, ...sharedFields() };
  for (const s of SIDES) body[s] = Number($(`out-${s}`).value);
  const result = await runJob("api/outpaint", body);
  showResults("outpaint-results", result.images);
  await refreshGallery();
}

// ---- interpolation -----------------------------------------------------------------------------

function keyframe(which) {
  const kind = $(`key-${which}-kind`).value;
  const value = $(`key-${which}`).value;
  return kind === "seed" ? { seed: Number(value) } : { [kind]: value };
}

async function interpolate(keyframes = [keyframe("a"), keyframe("b")], animation = "gif") {
  const f = sharedFields();
  const body = { keyframes, frames: Number($("frames").value), animation,
    prompt: $("prompt").value, seed: f.seed, steps: f.steps, cfg: f.cfg };
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
  $("morph-frame").src = fileUrl(state.morph.result.frames[i]);
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
    amounts: AMOUNTS, steps: sharedFields().steps });
  state.edits = result.images;
  $("amount").disabled = false;
  $("amount").max = AMOUNTS.length - 1;
  $("amount").value = AMOUNTS.indexOf(0);
  showEdit();
}

function showEdit() {
  const i = Number($("amount").value);
  if (!state.edits[i]) return;
  $("edited").src = fileUrl(state.edits[i].id);
  $("amount-out").textContent = String(state.edits[i].amount);
}

// ---- latent map --------------------------------------------------------------------------------

async function buildMap() {
  const result = await runJob("api/map", { source: $("map-source").value,
    limit: Number($("map-limit").value), size: 512, thumb: 32 });
  const stage = $("map-stage");
  for (const p of stage.querySelectorAll(".point")) p.remove();
  $("atlas").src = fileUrl(result.atlas);
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
  const num = (id) => ($(id).value === "" ? null : Number($(id).value));
  const body = { prompt: $("vid-prompt").value, frames: num("vid-frames"), seed: num("vid-seed"),
    steps: num("vid-steps"), cfg: num("vid-cfg") };
  if ($("vid-first").checked) body.image = needCurrent();
  const result = await runJob("api/video", body);
  $("video-clip").src = fileUrl(result.video);
  $("video-clip").hidden = false;
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
  $("reuse").addEventListener("click", reuse);
  $("clear-mask").addEventListener("click", clearMask);
  $("strength").addEventListener("input", () => { $("strength-out").textContent = $("strength").value; });
  $("scrub").addEventListener("input", showFrame);
  $("amount").addEventListener("input", showEdit);
  $("cancel").addEventListener("click", () => { if (state.job) api(`api/jobs/${state.job}/cancel`, {}).catch((e) => say(e.message, true)); });
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
  say("ready");
}

start().catch((e) => say(`could not start: ${e.message}`, true));
