"""The page's style sheet and script: no CDN, no server; filters and sorting are plain
JavaScript."""

CSS = """
body{font-family:system-ui,sans-serif;background:#18181c;color:#e8e8ea;margin:0}
header{padding:16px 24px;background:#222228;position:sticky;top:0;z-index:1}
h1{font-size:20px;margin:0 0 6px} .sub{color:#a0a0aa;font-size:13px}
.controls{margin-top:10px;display:flex;gap:14px;flex-wrap:wrap;font-size:14px}
select,label{color:#e8e8ea;background:#2c2c34;border:1px solid #44444c;border-radius:4px;
padding:3px 6px}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:14px;
padding:18px 24px}
.card{background:#222228;border-radius:8px;overflow:hidden;border-left:4px solid #2e9f43}
.card.wrong{border-left-color:#d73a49} .card img{width:100%;display:block;image-rendering:auto}
.meta{padding:8px 12px;font-size:13px;line-height:1.5} .title{font-weight:600}
b.right{color:#4cc46a} b.wrong{color:#ff6b7a}
.curve polyline{fill:none;stroke:#f0b429;stroke-width:1.5} .curve circle{fill:#f0b429}
.curve .mid{stroke:#44444c;stroke-dasharray:2 3} .curve-row{display:flex;align-items:center;gap:8px}
.p{color:#a0a0aa} .badge{display:inline-block;border-radius:10px;padding:0 8px;margin:2px 4px 0 0;
font-size:12px;background:#44444c} .badge.misclassified{background:#8b2230}
.badge.low_confidence{background:#8a6d12} .badge.non_finite{background:#b3261e}
.badge.on_cue,.badge.left_mask{background:#5b3a8c}
.hidden{display:none} #count{color:#a0a0aa}
.methods{padding:12px 24px 0} .methods h2{font-size:16px;margin:0 0 4px}
.methods p{color:#a0a0aa;font-size:13px;margin:0 0 6px}
.methods table{border-collapse:collapse;font-size:13px}
.methods td,.methods th{padding:3px 10px;border-bottom:1px solid #33333b;text-align:right}
.badge.empty_map{background:#5a5f66} .card:target{outline:2px solid #f0b429}
.datamap-section{padding:12px 24px 0} .datamap-section h2{font-size:16px;margin:0 0 4px}
.datamap-section p{color:#a0a0aa;font-size:13px;margin:0 0 6px;max-width:760px}
svg.datamap text{fill:#a0a0aa;font-size:11px} svg.datamap .region-label{fill:#d0d0d8;font-size:12px}
svg.datamap .axis{stroke:#55555f} svg.datamap circle{stroke:#18181c;stroke-width:1;cursor:pointer}
.datamap-legend{font-size:12px;color:#a0a0aa;margin:4px 0}
.datamap-legend .key{margin-right:12px} .datamap-legend i{display:inline-block;width:9px;
height:9px;border-radius:50%;margin-right:4px}
"""

JS = """
const main = document.querySelector('main');
const cards = Array.from(main.querySelectorAll('.card'));
const byClass = document.getElementById('class-filter');
const byFlag = document.getElementById('flag-filter');
const sortBy = document.getElementById('sort');
function apply() {
  const cls = byClass.value, flag = byFlag.value;
  let shown = 0;
  for (const card of cards) {
    const flags = card.dataset.flags.split(' ').filter(Boolean);
    const ok = (cls === '' || card.dataset.class === cls) &&
      (flag === '' || (flag === 'any' ? flags.length > 0 : flags.includes(flag)));
    card.classList.toggle('hidden', !ok);
    if (ok) shown += 1;
  }
  const key = sortBy.value;
  const sorted = cards.slice().sort((a, b) => {
    if (key === 'index') return a.dataset.index - b.dataset.index;
    if (key === 'attention') {
      return (a.dataset.attention - b.dataset.attention) || (a.dataset.lift - b.dataset.lift) ||
        (a.dataset.index - b.dataset.index);
    }
    if (key === 'doubt') {
      return (a.dataset.priority - b.dataset.priority) ||
        (a.dataset.truep - b.dataset.truep) || (a.dataset.index - b.dataset.index);
    }
    return (a.dataset.truep - b.dataset.truep) || (a.dataset.index - b.dataset.index);
  });
  for (const card of sorted) main.appendChild(card);
  document.getElementById('count').textContent = shown + ' of ' + cards.length + ' probes';
}
for (const el of [byClass, byFlag, sortBy]) el.addEventListener('change', apply);
// The poster is the last epoch, as the card's text; the GIF plays every epoch on demand.
for (const img of main.querySelectorAll('.card img[data-gif]')) {
  const play = () => { img.src = img.dataset.gif; };
  const stop = () => { img.src = img.dataset.poster; };
  img.addEventListener('mouseenter', play);
  img.addEventListener('mouseleave', stop);
  img.addEventListener('click', () => (img.src.endsWith(img.dataset.gif) ? stop() : play()));
}
// A point of the data map links to its card: a card hidden by a filter is shown first.
for (const a of document.querySelectorAll('svg.datamap a')) {
  a.addEventListener('click', () => {
    const card = document.getElementById('probe-' + String(a.dataset.probe).padStart(3, '0'));
    if (card && card.classList.contains('hidden')) {
      byClass.value = '';
      byFlag.value = '';
      apply();
    }
  });
}
apply();
"""
