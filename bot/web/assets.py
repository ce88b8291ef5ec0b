"""The pages' stylesheet and script: small, inline, no build step."""

from __future__ import annotations

CSS = """
:root { color-scheme: light dark; --bg: #0f1117; --fg: #d8dee9; --muted: #8b93a7;
  --ok: #3fb950; --bad: #f85149; --run: #d29922; --panel: #161b22; }
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; background: var(--bg); color: var(--fg); }
main { max-width: 1100px; margin: 0 auto; padding: 16px; }
a { color: #58a6ff; }
h1 { font-size: 20px; margin: 8px 0; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600;
  background: #30363d; }
.badge.succeeded { background: var(--ok); color: #000; }
.badge.failed, .badge.cancelled { background: var(--bad); color: #000; }
.badge.cloning, .badge.building, .badge.pushing { background: var(--run); color: #000; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0; }
dt { color: var(--muted); } dd { margin: 0; font-family: ui-monospace, monospace;
  overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 8px 0; }
td, th { padding: 2px 12px 2px 0; text-align: left; }
th { color: var(--muted); font-weight: normal; }
.toolbar { display: flex; gap: 12px; align-items: center; margin: 12px 0 4px; }
button { background: #21262d; color: var(--fg); border: 1px solid #30363d; border-radius: 6px;
  padding: 3px 12px; cursor: pointer; }
#log { background: var(--panel); padding: 8px; margin: 0; height: 60vh; overflow: auto;
  font: 12.5px/1.4 ui-monospace, monospace; white-space: pre-wrap; word-break: break-all; }
#log .ln { display: block; } #log .stderr { color: #ffa198; }
.muted { color: var(--muted); }
.b { font-weight: bold; } .i { font-style: italic; } .u { text-decoration: underline; }
.f30{color:#6e7681}.f31{color:#ff7b72}.f32{color:#3fb950}.f33{color:#d29922}
.f34{color:#58a6ff}.f35{color:#bc8cff}.f36{color:#39c5cf}.f37{color:#b1bac4}
.f90{color:#8b949e}.f91{color:#ffa198}.f92{color:#56d364}.f93{color:#e3b341}
.f94{color:#79c0ff}.f95{color:#d2a8ff}.f96{color:#56d4dd}.f97{color:#f0f6fc}
.g40{background:#484f58}.g41{background:#8e1519}.g42{background:#196c2e}.g43{background:#7d4e00}
.g44{background:#0d419d}.g45{background:#6e40c9}.g46{background:#1b7c83}.g47{background:#b1bac4}
"""

# The log follows the tail while the view is at the bottom; Pause holds new lines back
# (counted) until Resume. ANSI SGR colours become spans; everything else is text.
SCRIPT = """
(function () {
  const page = document.getElementById('page');
  const url = page.dataset.events;
  const log = document.getElementById('log');
  const pauseButton = document.getElementById('pause');
  const held = document.getElementById('held');
  let paused = false, pending = [], es = null;
  function ansi(text) {
    const out = document.createDocumentFragment();
    const re = /\\x1b\\[([0-9;]*)m/g;
    let classes = [], last = 0, m;
    function push(s) {
      if (!s) return;
      if (classes.length) { const sp = document.createElement('span');
        sp.className = classes.join(' '); sp.textContent = s; out.appendChild(sp); }
      else out.appendChild(document.createTextNode(s));
    }
    while ((m = re.exec(text)) !== null) {
      push(text.slice(last, m.index)); last = re.lastIndex;
      const codes = m[1] === '' ? [0] : m[1].split(';').map(Number);
      for (const c of codes) {
        if (c === 0) classes = [];
        else if (c === 1) classes.push('b'); else if (c === 3) classes.push('i');
        else if (c === 4) classes.push('u');
        else if ((c >= 30 && c <= 37) || (c >= 90 && c <= 97)) {
          classes = classes.filter(k => k[0] !== 'f'); classes.push('f' + c); }
        else if (c === 39) classes = classes.filter(k => k[0] !== 'f');
        else if (c >= 40 && c <= 47) { classes = classes.filter(k => k[0] !== 'g');
          classes.push('g' + c); }
        else if (c === 49) classes = classes.filter(k => k[0] !== 'g');
      }
    }
    push(text.slice(last).replace(/\\x1b\\[[0-9;?]*[A-Za-z]/g, ''));
    return out;
  }
  function append(items) {
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    const frag = document.createDocumentFragment();
    for (const item of items) {
      const div = document.createElement('span');
      div.className = 'ln' + (item.stream === 'stderr' ? ' stderr' : '');
      div.dataset.seq = item.seq; div.appendChild(ansi(item.line));
      frag.appendChild(div);
    }
    log.appendChild(frag);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }
  function text(id, value) {
    const el = document.getElementById(id);
    if (el) el.textContent = (value === null || value === undefined || value === '') ? '-' : value;
  }
  function status(d) {
    const badge = document.getElementById('status');
    badge.textContent = d.status; badge.className = 'badge ' + d.status;
    text('image', d.image); text('digest', d.digest); text('error', d.error);
    if (d.live_url && !document.querySelector('#live_url a')) text('live_url', d.live_url);
    text('commit', d.commit);
    text('progress', d.steps_total ? ('step ' + d.step + ' of ' + d.steps_total +
      (d.progress_message ? ': ' + d.progress_message : '')) : d.progress_message);
    if (d.steps) {
      const body = document.getElementById('steps');
      body.textContent = '';
      for (const s of d.steps) {
        if (s.kind !== 'pipeline') continue;
        const tr = document.createElement('tr');
        for (const v of [s.name, s.status,
            s.seconds === null ? '…' : s.seconds.toFixed(2) + ' s']) {
          const td = document.createElement('td'); td.textContent = v; tr.appendChild(td); }
        body.appendChild(tr);
      }
    }
  }
  function connect() {
    es = new EventSource(url);
    es.addEventListener('log', e => {
      const item = JSON.parse(e.data);
      if (paused) { pending.push(item); held.textContent = pending.length + ' new lines'; }
      else append([item]);
    });
    es.addEventListener('status', e => status(JSON.parse(e.data)));
    es.addEventListener('end', () => { es.close(); document.body.dataset.ended = '1'; });
  }
  pauseButton.addEventListener('click', () => {
    paused = !paused;
    pauseButton.textContent = paused ? 'Resume' : 'Pause';
    if (!paused) { append(pending); pending = []; held.textContent = '';
      log.scrollTop = log.scrollHeight; }
  });
  connect();
})();
"""
