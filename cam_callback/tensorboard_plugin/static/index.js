// The CAM dashboard: one epoch slider moving every probe of a run record, optionally beside a
// second run of the same probes. Data comes from this plugin's routes only (no network loads);
// every name from the record is written with textContent, never parsed as HTML. A run that
// cannot be read is listed with its reason and never hides the others; choosing it says why on
// the page and clears the cards of the run shown before.

const POLL_MS = 2000;
const PLAY_MS = 600;
const SVG = 'http://www.w3.org/2000/svg';

const state = {
  runs: [],
  want: null, // the run chosen in the first selector, readable or not
  a: null, // {name, epochs, probes, class_names}; null while the chosen run cannot be read
  b: null,
  pos: 0,
  timer: null,
  cards: [],
  flagHelp: {},
  flagLabels: {},
};

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJSON(url) {
  const response = await fetch(url);
  // The server's reason (a 404 says why a record is unreadable) is the message shown,
  // without the "Not found: " TensorBoard puts before it.
  if (!response.ok) {
    const reason = (await response.text()).replace(/^(Not found|Invalid argument): /, '');
    throw new Error(reason || `${url}: ${response.status}`);
  }
  return response.json();
}

function frameURL(run, probe, epoch) {
  return './frame?' + new URLSearchParams({run, probe: String(probe), epoch: String(epoch)});
}

function epochLabel(epoch) {
  return epoch < 0 ? 'before training' : `epoch ${epoch}`;
}

function option(select, value, text) {
  const o = document.createElement('option');
  o.value = value;
  o.textContent = text;
  select.appendChild(o);
}

function buildLayout() {
  const link = el('link', {rel: 'stylesheet', href: './style.css'});
  document.head.appendChild(link);
  const header = el('header');
  const row1 = el('div', {class: 'controls'});
  const runA = el('select', {id: 'run-a', 'aria-label': 'run'});
  const runB = el('select', {id: 'run-b', 'aria-label': 'compare with'});
  row1.append(el('span', {}, 'run '), runA, el('span', {}, ' beside '), runB);
  const row2 = el('div', {class: 'controls'});
  const play = el('button', {id: 'play', type: 'button'}, 'Play');
  const slider = el('input', {id: 'epoch', type: 'range', min: '0', max: '0', value: '0'});
  const label = el('span', {id: 'epoch-label'}, '');
  row2.append(play, slider, label);
  const row3 = el('div', {class: 'controls'});
  const byClass = el('select', {id: 'class-filter', 'aria-label': 'class'});
  const byFlag = el('select', {id: 'flag-filter', 'aria-label': 'flag'});
  const sort = el('select', {id: 'sort', 'aria-label': 'sort'});
  option(sort, 'doubt', 'most doubtful first');
  option(sort, 'attention', 'attention: on cue / left mask first');
  option(sort, 'truep', 'lowest p(true) first');
  option(sort, 'index', 'probe order');
  row3.append(el('span', {}, 'class '), byClass, el('span', {}, ' flag '), byFlag,
      el('span', {}, ' sort '), sort, el('span', {id: 'count'}, ''));
  const status = el('div', {id: 'status'}, 'Loading run records…');
  const broken = el('ul', {id: 'broken'});
  header.append(row1, row2, row3, status, broken);
  const datamap = el('section', {id: 'datamap'});
  const gallery = el('section', {id: 'evidence'});
  const main = el('main', {id: 'cards'});
  document.body.append(header, datamap, gallery, main);

  runA.addEventListener('change', () => selectRuns(runA.value, ''));
  runB.addEventListener('change', () => selectRuns(runA.value, runB.value));
  slider.addEventListener('input', () => setPos(Number(slider.value)));
  play.addEventListener('click', togglePlay);
  for (const s of [byClass, byFlag, sort]) s.addEventListener('change', applyFilters);
}

function fillRunSelects() {
  const runA = document.getElementById('run-a');
  const runB = document.getElementById('run-b');
  const keepA = state.want !== null ? state.want : runA.value;
  runA.replaceChildren();
  for (const r of state.runs) {
    option(runA, r.name, r.error ? `${r.name} (unreadable)` : r.name);
    if (r.error) runA.lastChild.title = r.error;
  }
  if (keepA !== null) runA.value = keepA;
  runB.replaceChildren();
  option(runB, '', 'nothing');
  const fp = state.runs.find((r) => r.name === runA.value)?.fingerprint;
  // Runs that cannot go beside this one are listed, disabled, with the reason.
  const left = [];
  for (const r of state.runs) {
    if (r.name === runA.value) continue;
    if (!r.error && r.fingerprint === fp) {
      option(runB, r.name, r.name);
    } else {
      const why = r.error ? 'unreadable' : 'other probes: frames cannot be paired';
      left.push([r, why]);
    }
  }
  for (const [r, why] of left) {
    option(runB, r.name, `${r.name} (${why})`);
    runB.lastChild.disabled = true;
    runB.lastChild.title = r.error ||
      `${r.name} was recorded on other probes (another probe fingerprint), so its frames ` +
      'do not show the same images';
  }
  runB.value = state.b ? state.b.name : '';
}

async function loadRun(name) {
  const data = await getJSON('./probes?' + new URLSearchParams({run: name}));
  return {name, ...data};
}

function showUnreadable(name, err) {
  state.a = null;
  state.b = null;
  state.cards = [];
  document.getElementById('cards').replaceChildren();
  fillRunSelects();
  const slider = document.getElementById('epoch');
  slider.max = '0';
  slider.value = '0';
  document.getElementById('epoch-label').textContent = '';
  document.getElementById('count').textContent = '';
  const status = document.getElementById('status');
  status.textContent = `Run ${name} cannot be shown: ${err.message}`;
  status.className = 'error';
  document.body.dataset.ready = '1';
}

function listUnreadable() {
  const list = document.getElementById('broken');
  list.replaceChildren();
  for (const r of state.runs) if (r.error) list.append(el('li', {}, r.error));
}

async function selectRuns(nameA, nameB) {
  stopPlay();
  const atEnd = !state.a || state.pos >= state.a.epochs.length - 1;
  state.want = nameA;
  let a;
  try {
    a = await loadRun(nameA);
  } catch (err) {
    return showUnreadable(nameA, err);
  }
  let b = null;
  let note = '';
  if (nameB) {
    try {
      b = await loadRun(nameB);
    } catch (err) {
      note = ` · ${nameB} cannot be shown: ${err.message}`;
    }
  }
  let map = null;
  try {
    map = await getJSON('./datamap?' + new URLSearchParams({run: nameA}));
  } catch (err) {
    map = {error: err.message};
  }
  let gallery = null;
  try {
    gallery = await getJSON('./gallery?' + new URLSearchParams({run: nameA}));
  } catch (err) {
    gallery = {error: err.message};
  }
  if (state.want !== nameA) return; // another run was chosen meanwhile
  const sameRun = state.a && state.a.name === a.name;
  state.a = a;
  state.b = b;
  fillRunSelects();
  const slider = document.getElementById('epoch');
  slider.max = String(Math.max(0, a.epochs.length - 1));
  const pos = sameRun && !atEnd ? Math.min(state.pos, a.epochs.length - 1) : a.epochs.length - 1;
  buildCards();
  showDatamap(map);
  showGallery(gallery);
  setPos(Math.max(0, pos));
  const info = state.runs.find((r) => r.name === a.name) || {};
  const status = document.getElementById('status');
  status.className = note ? 'error' : '';
  status.textContent = (a.epochs.length ?
    `${a.probes.length} probes · ${a.epochs.length} frames (${epochLabel(a.epochs[0])} to ` +
    `${epochLabel(a.epochs[a.epochs.length - 1])}) · ` +
    (info.explains ? `each map explains ${info.explains} · ` : '') +
    (info.weights_note ? `${info.weights_note} · ` : '') +
    (a.worst_group ? `${a.worst_group} · ` : '') + 'refreshed live' :
    'No complete epoch recorded yet.') + note;
  document.body.dataset.ready = '1';
}

// The data map: the server's SVG (the review page's, from report/datamap.py), parsed as SVG,
// never as HTML; each point goes to its card.
function showDatamap(map) {
  const section = document.getElementById('datamap');
  section.replaceChildren();
  if (!map || map.error || !state.a || !state.a.epochs.length) {
    if (map && map.error) section.append(el('p', {class: 'note'}, `No data map: ${map.error}`));
    return;
  }
  section.append(el('h2', {}, 'Data map'), el('p', {class: 'note'},
      'Each probe at its mean p(true) over the training epochs against its variability ' +
      '(dataset cartography): easy, ambiguous, hard. Colour: its first flag at the end of ' +
      'training. Click a point to go to its card.'));
  const doc = new DOMParser().parseFromString(map.svg, 'image/svg+xml');
  const svg = document.importNode(doc.documentElement, true);
  for (const a of svg.querySelectorAll('a')) {
    a.addEventListener('click', (event) => {
      event.preventDefault();
      pickCard(Number(a.dataset.probe));
    });
  }
  const legend = el('div', {class: 'datamap-legend'});
  for (const [flag, colour] of map.legend) {
    const key = el('span', {class: 'key'});
    const dot = el('i');
    dot.style.background = colour;
    key.append(dot, flag === 'none' ? 'no flag' : flag.replaceAll('_', ' '));
    legend.append(key);
  }
  if (map.missing) {
    legend.append(`${map.missing} probe(s) with a non-finite probability not shown.`);
  }
  section.append(svg, legend);
}

// What each class looks for (report/gallery.py): evidence regions and mean maps, as inline
// PNG data URIs; the captions are text.
function showGallery(gallery) {
  const section = document.getElementById('evidence');
  section.replaceChildren();
  if (!gallery || gallery.error || !gallery.classes.length) {
    if (gallery && gallery.error) {
      section.append(el('p', {class: 'note'}, `No gallery: ${gallery.error}`));
    }
    return;
  }
  section.append(el('h2', {}, 'What each class looks for'), el('p', {class: 'note'},
      'Each probe\'s most-attended part, pasted at the same place onto probes of other ' +
      'classes the model does not call its class: the share it turns into its class ' +
      '(control: a region of the same shape from elsewhere in the image). No mask needed.'));
  for (const g of gallery.classes) {
    const box = el('div', {class: 'ev-class'});
    box.dataset.class = g.name;
    box.append(el('h3', {}, g.summary));
    const strips = [...g.strips, {title: 'where the class looks (mean map of its probes)',
      tiles: g.maps.map((m) => ({png: m.png, caption: m.epoch}))}];
    for (const s of strips) {
      const strip = el('div', {class: 'ev-strip'});
      strip.append(el('div', {class: 'ev-title'}, s.title));
      for (const t of s.tiles) {
        const fig = el('figure');
        const img = el('img', {src: t.png, alt: t.caption});
        if (t.probe !== undefined) {
          img.addEventListener('click', () => pickCard(t.probe));
        }
        fig.append(img, el('figcaption', {}, t.caption));
        strip.append(fig);
      }
      box.append(strip);
    }
    section.append(box);
  }
}

function pickCard(index) {
  const found = state.cards.find((c) => c.p.index === index);
  if (!found) return;
  if (found.card.classList.contains('hidden')) {
    document.getElementById('class-filter').value = '';
    document.getElementById('flag-filter').value = '';
    applyFilters();
  }
  for (const c of state.cards) c.card.classList.remove('picked');
  found.card.classList.add('picked');
  found.card.scrollIntoView({block: 'center'});
}

function className(run, cls) {
  return cls < 0 ? 'none' : (run.class_names[cls] ?? String(cls));
}

// The frame's caption, written as text so it stays sharp however the frame is scaled.
function captionText(run, p, pos) {
  const pred = p.pred[pos];
  let text = epochLabel(run.epochs[pos]);
  if (p.label !== null) text += ` · true: ${p.label_name}`;
  text += ` · pred: ${className(run, pred)} ${p.p_pred[pos].toFixed(2)}`;
  text += ` · map: ${className(run, p.map[pos])}`;
  return text;
}

function sparkline(curve, cls, name) {
  const w = 160;
  const h = 36;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'curve ' + cls);
  svg.setAttribute('width', w);
  svg.setAttribute('height', h);
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  const xs = curve.map((_, i) => (curve.length > 1 ? 2 + i * (w - 4) / (curve.length - 1) : w / 2));
  const ys = curve.map((v) => h - 2 - Math.min(1, Math.max(0, v)) * (h - 4));
  const mid = document.createElementNS(SVG, 'line');
  for (const [k, v] of Object.entries({x1: 0, x2: w, y1: h / 2, y2: h / 2, class: 'mid'})) {
    mid.setAttribute(k, v);
  }
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('points', xs.map((x, i) => `${x.toFixed(1)},${ys[i].toFixed(1)}`).join(' '));
  const dot = document.createElementNS(SVG, 'circle');
  dot.setAttribute('r', '3');
  const title = document.createElementNS(SVG, 'title');
  title.textContent = `p(true) per epoch, ${name}`;
  svg.append(title, mid, line, dot);
  return {svg, dot, xs, ys};
}

function badgeRow(p, cls, name) {
  const badges = el('div', {class: `badges ${cls}`});
  const when = (name ? `${name}, ` : '') + 'at the end of training: ';
  if (p.flags.length) badges.append(el('span', {class: 'when'}, when));
  for (const f of p.flags) {
    const badge = el('span', {class: `badge ${f}`}, p.badges[f] || f);
    if (state.flagHelp[f]) badge.title = state.flagHelp[f];
    badges.append(badge);
  }
  return badges;
}

function buildCards() {
  const main = document.getElementById('cards');
  main.replaceChildren();
  state.cards = [];
  const a = state.a;
  const bByIndex = new Map((state.b ? state.b.probes : []).map((p) => [p.index, p]));
  const classes = new Set();
  for (const p of a.probes) {
    classes.add(p.class);
    const card = el('article', {class: 'card'});
    card.dataset.index = p.index;
    card.dataset.class = p.class;
    card.dataset.flags = p.flags.join(' ');
    card.dataset.priority = p.priority[0];
    card.dataset.truep = p.true_probability;
    card.dataset.attention = p.attention[0];
    card.dataset.lift = p.attention[1];
    card.id = `probe-${String(p.index).padStart(3, '0')}`;
    const frames = el('div', {class: 'frames'});
    const imgA = el('img', {class: 'frame a', alt: `probe ${p.index}`});
    const figA = el('figure');
    const capA = el('figcaption', {class: 'caption a'}, '');
    figA.append(capA, imgA);
    let imgB = null;
    let capB = null;
    if (state.b) {
      imgB = el('img', {class: 'frame b', alt: `probe ${p.index}, ${state.b.name}`});
      capB = el('figcaption', {class: 'caption b'}, '');
      const figB = el('figure');
      figB.append(capB, imgB);
      frames.append(figA, figB);
    } else {
      frames.append(figA);
    }
    const meta = el('div', {class: 'meta'});
    const title = el('div', {class: 'title'}, `probe ${String(p.index).padStart(3, '0')}`);
    if (p.label !== null) title.append(' · true: ', el('b', {}, p.label_name));
    const curveRow = el('div', {class: 'curve-row'});
    const sa = sparkline(p.curve, 'a', a.name);
    curveRow.append(sa.svg);
    const pb = bByIndex.get(p.index);
    const sb = pb ? sparkline(pb.curve, 'b', state.b.name) : null;
    if (sb) curveRow.append(sb.svg);
    const ptext = el('span', {class: 'p'}, '');
    curveRow.append(ptext);
    if (sb) { // two curves: say which run each colour is
      const legend = el('div', {class: 'legend'});
      for (const [cls, name] of [['a', a.name], ['b', state.b.name]]) {
        const key = el('span', {class: `key ${cls}`});
        key.append(el('i', {class: cls}), name);
        legend.append(key);
      }
      meta.append(title, curveRow, legend);
    } else {
      meta.append(title, curveRow);
    }
    // Flags describe the end of training, whatever epoch the slider shows: said, and
    // dimmed away from the last epoch, while the border and caption follow the slider.
    // Beside a second run, its flags are shown too, each row named after its run.
    const badges = badgeRow(p, 'a', state.b ? a.name : '');
    const badgesB = pb ? badgeRow(pb, 'b', state.b.name) : null;
    meta.append(badges);
    if (badgesB) meta.append(badgesB);
    card.append(frames, meta);
    main.append(card);
    state.cards.push({card, p, pb, imgA, imgB, sa, sb, ptext, capA, capB, badges, badgesB});
  }
  const byClass = document.getElementById('class-filter');
  const keep = byClass.value;
  byClass.replaceChildren();
  option(byClass, '', 'all');
  for (const c of [...classes].sort()) option(byClass, c, c);
  byClass.value = [...classes].includes(keep) ? keep : '';
  applyFilters();
}

function setPos(pos) {
  const a = state.a;
  if (!a || !a.epochs.length) return;
  state.pos = Math.max(0, Math.min(pos, a.epochs.length - 1));
  const slider = document.getElementById('epoch');
  slider.value = String(state.pos);
  const epochA = a.epochs[state.pos];
  const b = state.b;
  const posB = b ? Math.min(state.pos, b.epochs.length - 1) : -1;
  const epochB = b && posB >= 0 ? b.epochs[posB] : null;
  document.getElementById('epoch-label').textContent = epochLabel(epochA);
  document.body.dataset.epoch = String(epochA);
  for (const c of state.cards) {
    c.imgA.src = frameURL(a.name, c.p.index, epochA);
    c.sa.dot.setAttribute('cx', c.sa.xs[state.pos].toFixed(1));
    c.sa.dot.setAttribute('cy', c.sa.ys[state.pos].toFixed(1));
    const right = c.p.label === null || c.p.pred[state.pos] === c.p.label;
    c.card.classList.toggle('wrong', !right);
    c.capA.textContent = (c.imgB ? `${a.name} · ` : '') + captionText(a, c.p, state.pos);
    c.capA.title = c.capA.textContent;
    c.capA.classList.toggle('wrong', !right);
    c.badges.classList.toggle('stale', state.pos !== a.epochs.length - 1);
    let text = `p(true) ${c.p.curve[state.pos].toFixed(2)}`;
    if (c.imgB && epochB !== null) {
      c.imgB.src = frameURL(b.name, c.p.index, epochB);
      c.capB.textContent = c.pb ? `${b.name} · ${captionText(b, c.pb, posB)}` :
        `${b.name} · ${epochLabel(epochB)}`;
      c.capB.title = c.capB.textContent;
      if (c.badgesB) c.badgesB.classList.toggle('stale', posB !== b.epochs.length - 1);
      if (c.sb) {
        c.sb.dot.setAttribute('cx', c.sb.xs[posB].toFixed(1));
        c.sb.dot.setAttribute('cy', c.sb.ys[posB].toFixed(1));
        text += ` · ${c.pb.curve[posB].toFixed(2)}`;
      }
    }
    c.ptext.textContent = text;
  }
}

function applyFilters() {
  const cls = document.getElementById('class-filter').value;
  const flag = document.getElementById('flag-filter').value;
  const key = document.getElementById('sort').value;
  let shown = 0;
  for (const {card} of state.cards) {
    const flags = card.dataset.flags.split(' ').filter(Boolean);
    const ok = (cls === '' || card.dataset.class === cls) &&
      (flag === '' || (flag === 'any' ? flags.length > 0 : flags.includes(flag)));
    card.classList.toggle('hidden', !ok);
    if (ok) shown += 1;
  }
  const n = (c, k) => Number(c.dataset[k]);
  const sorted = state.cards.map((c) => c.card).sort((x, y) => {
    if (key === 'index') return n(x, 'index') - n(y, 'index');
    if (key === 'doubt') {
      return (n(x, 'priority') - n(y, 'priority')) || (n(x, 'truep') - n(y, 'truep')) ||
        (n(x, 'index') - n(y, 'index'));
    }
    if (key === 'attention') {
      return (n(x, 'attention') - n(y, 'attention')) || (n(x, 'lift') - n(y, 'lift')) ||
        (n(x, 'index') - n(y, 'index'));
    }
    return (n(x, 'truep') - n(y, 'truep')) || (n(x, 'index') - n(y, 'index'));
  });
  const main = document.getElementById('cards');
  for (const card of sorted) main.appendChild(card);
  document.getElementById('count').textContent = ` ${shown} of ${state.cards.length} probes`;
}

function stopPlay() {
  if (state.timer !== null) clearInterval(state.timer);
  state.timer = null;
  document.getElementById('play').textContent = 'Play';
}

function togglePlay() {
  if (state.timer !== null) return stopPlay();
  document.getElementById('play').textContent = 'Pause';
  state.timer = setInterval(() => {
    const n = state.a ? state.a.epochs.length : 0;
    if (n) setPos((state.pos + 1) % n);
  }, PLAY_MS);
}

function fillFlags(flags) {
  const byFlag = document.getElementById('flag-filter');
  if (byFlag.options.length) return;
  option(byFlag, '', 'all');
  option(byFlag, 'any', 'any flag');
  for (const f of flags) option(byFlag, f, state.flagLabels[f] || f.replaceAll('_', ' '));
}

async function poll() {
  try {
    const {runs, flags, flag_help: flagHelp, flag_labels: flagLabels} = await getJSON('./runs');
    state.flagHelp = flagHelp || {};
    state.flagLabels = flagLabels || {};
    fillFlags(flags);
    const sign = (list) =>
      JSON.stringify(list.map((r) => [r.name, r.epochs, r.fingerprint, r.error]));
    const before = sign(state.runs);
    state.runs = runs;
    listUnreadable();
    // The first readable run is shown first; an unreadable one only when chosen.
    const first = (runs.find((r) => !r.error) || runs[0] || {}).name;
    if (state.want === null && runs.length) {
      await selectRuns(first, '');
    } else if (before !== sign(runs) && state.want !== null) {
      const stillA = runs.some((r) => r.name === state.want);
      const stillB = state.b && runs.some((r) => r.name === state.b.name && !r.error);
      const playing = state.timer !== null;
      await selectRuns(stillA ? state.want : first, stillB ? state.b.name : '');
      if (playing && state.a) togglePlay();
    }
    if (!runs.length) {
      document.getElementById('status').textContent = 'No run record (*/cam/record.json) yet.';
    }
  } catch (err) {
    document.getElementById('status').textContent = `Could not read the runs: ${err.message}`;
  }
}

export async function render() {
  buildLayout();
  await poll();
  setInterval(poll, POLL_MS);
}
