// The Keel web console: a plain module, no framework, no build step. Every piece of text from
// the API (task, model text, tool output, file diffs) goes into the page as a text node, never
// as HTML: outputs are whatever a sandboxed command printed, so they are treated as hostile.

const KEY = 'keel.apiKey';
const main = document.getElementById('main');
/** Called when the page changes: stops the stream and timers of the page that was shown. */
let leave = () => {};

// --- helpers ---------------------------------------------------------------------------

/** An element: `attrs` are properties (`on*` are listeners, `data-*`/`aria-*` attributes); children are nodes or text. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'for') el.setAttribute(k, String(v));
    else el[k] = v;
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

const key = () => sessionStorage.getItem(KEY);

class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.code;
  }
}

/** A JSON call to the API with the key; a 401 forgets the key and asks for it again. */
async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${key()}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  const json = text ? JSON.parse(text) : undefined;
  if (res.status === 401) {
    sessionStorage.removeItem(KEY);
    route();
  }
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}

const enc = encodeURIComponent;
const fmtInt = (n) => (typeof n === 'number' ? n.toLocaleString('en-US') : '');
const fmtUsd = (n) => (typeof n === 'number' ? `$${n.toFixed(n < 0.01 ? 4 : 2)}` : '–');
function age(iso) {
  if (!iso) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}
const json = (v) => JSON.stringify(v, null, 2);
const statusBadge = (status) => h('span', { className: `status ${String(status).replace(/[^a-z_]/g, '')}`, 'data-status': status }, status);
const errorLine = (err) => h('p', { className: 'error', role: 'alert' }, err instanceof Error ? err.message : String(err));

/** A form whose submit runs `action`; errors show under it, the button is off while it runs. */
function form(attrs, children, action) {
  const out = h('p', { className: 'error', role: 'alert' });
  const f = h('form', attrs, ...children, out);
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    out.textContent = '';
    const buttons = [...f.querySelectorAll('button')];
    buttons.forEach((b) => (b.disabled = true));
    try {
      await action(f, ev.submitter);
    } catch (err) {
      out.textContent = err instanceof Error ? err.message : String(err);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  });
  return f;
}

// --- routing -----------------------------------------------------------------------------

function route() {
  leave();
  leave = () => {};
  main.replaceChildren();
  document.getElementById('logout').hidden = !key();
  if (!key()) return loginPage();
  const m = /^#\/sessions\/(.+)$/.exec(location.hash);
  if (m) return sessionPage(decodeURIComponent(m[1]));
  return listPage();
}
window.addEventListener('hashchange', route);
document.getElementById('logout').addEventListener('click', () => {
  sessionStorage.removeItem(KEY);
  location.hash = '#/';
  route();
});

// --- the key -----------------------------------------------------------------------------

function loginPage() {
  main.append(
    h('h1', {}, 'Keel console'),
    h('p', {}, 'Enter an API key (', h('code', {}, 'keel apikey create --tenant <t>'), '). It is kept in this tab only (sessionStorage) and sent as Authorization: Bearer.'),
    form({ id: 'login' }, [h('div', { className: 'row' }, h('input', { type: 'password', name: 'key', id: 'key', placeholder: 'keel_…', autocomplete: 'off', required: true }), h('button', { type: 'submit' }, 'Open'))], async (f) => {
      const value = f.key.value.trim();
      const res = await fetch('/sessions?limit=1', { headers: { authorization: `Bearer ${value}` } });
      if (!res.ok) throw new Error((await res.json().catch(() => ({}))).message ?? `HTTP ${res.status}`);
      sessionStorage.setItem(KEY, value);
      route();
    }),
  );
}

// --- the sessions list -------------------------------------------------------------------

const EXAMPLE_SPEC = {
  task: 'write hello.txt',
  model: { provider: 'scripted', model: 'console-demo', script: [{ toolCalls: [{ name: 'shell', input: { command: 'echo hello > /workspace/hello.txt' } }] }, { text: 'done' }] },
  maxSteps: 10,
};

function listPage() {
  const body = h('tbody');
  const state = h('p', { className: 'meta' });
  const table = h(
    'table',
    { id: 'sessions' },
    h('thead', {}, h('tr', {}, h('th', {}, 'session'), h('th', {}, 'status'), h('th', {}, 'tenant'), h('th', { className: 'num' }, 'steps'), h('th', { className: 'num' }, 'tokens in / out'), h('th', { className: 'num' }, 'cost'), h('th', { className: 'num' }, 'age'), h('th', {}, 'task'))),
    body,
  );
  async function refresh() {
    try {
      const sessions = await api('GET', '/sessions?limit=100');
      body.replaceChildren(
        ...sessions.map((s) =>
          h(
            'tr',
            { 'data-session': s.id },
            h('td', {}, h('a', { href: `#/sessions/${enc(s.id)}` }, s.id)),
            h('td', {}, statusBadge(s.status)),
            h('td', {}, s.tenant),
            h('td', { className: 'num' }, fmtInt(s.steps)),
            h('td', { className: 'num' }, `${fmtInt(s.inputTokens)} / ${fmtInt(s.outputTokens)}`),
            h('td', { className: 'num' }, fmtUsd(s.usd)),
            h('td', { className: 'num', title: s.createdAt ?? '' }, age(s.createdAt)),
            h('td', {}, s.task.length > 120 ? `${s.task.slice(0, 120)}…` : s.task),
          ),
        ),
      );
      if (sessions.length === 0) body.append(h('tr', {}, h('td', { colSpan: 8 }, 'no sessions yet')));
      state.textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      state.replaceChildren(errorLine(err));
    }
  }
  const timer = setInterval(refresh, 5000);
  leave = () => clearInterval(timer);

  const start = form(
    { id: 'start' },
    [
      h('p', { className: 'meta' }, 'The body of POST /sessions (the spec `keel run` builds; the tenant is the key\'s).'),
      h('textarea', { name: 'spec', id: 'spec', rows: 12, spellcheck: false, value: json(EXAMPLE_SPEC) }),
      h('button', { type: 'submit' }, 'Start session'),
    ],
    async (f) => {
      let spec;
      try {
        spec = JSON.parse(f.spec.value);
      } catch (err) {
        throw new Error(`the spec is not JSON: ${err.message}`);
      }
      const { sessionId } = await api('POST', '/sessions', spec);
      location.hash = `#/sessions/${enc(sessionId)}`;
    },
  );
  main.append(h('h1', {}, 'Sessions'), table, state, h('section', {}, h('h2', {}, 'Start a session'), start));
  refresh();
}

// --- one session -------------------------------------------------------------------------

/**
 * Follow `/sessions/:id/stream` with fetch (EventSource cannot send the key). Reconnects after a
 * drop with Last-Event-ID, so no event is missed or shown twice. `event: delta` messages (a running
 * model call's text, without an id: not events, not resent) go to `onDelta`. Returns a function that stops it.
 */
function followStream(id, onEvent, onEnd, onOpen = () => {}, onDelta = () => {}) {
  const ctl = new AbortController();
  let last = 0;
  let ended = false;
  (async () => {
    while (!ended && !ctl.signal.aborted) {
      try {
        const res = await fetch(`/sessions/${enc(id)}/stream`, { headers: { authorization: `Bearer ${key()}`, accept: 'text/event-stream', ...(last ? { 'last-event-id': String(last) } : {}) }, signal: ctl.signal });
        if (!res.ok || !res.body) throw new ApiError(res.status, await res.json().catch(() => undefined));
        onOpen();
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let event = 'message';
            let data = '';
            let eid;
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) continue;
              const i = line.indexOf(':');
              const field = i < 0 ? line : line.slice(0, i);
              const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
              if (field === 'event') event = val;
              else if (field === 'data') data += (data ? '\n' : '') + val;
              else if (field === 'id') eid = val;
            }
            if (event === 'end') {
              ended = true;
              onEnd();
            } else if (event === 'delta') {
              if (data) onDelta(JSON.parse(data));
            } else if (data) {
              const e = JSON.parse(data);
              if (e.seq > last) {
                last = e.seq;
                onEvent(e);
              }
            } else if (eid) last = Number(eid);
          }
        }
      } catch (err) {
        if (ctl.signal.aborted) return;
        if (err instanceof ApiError && err.status < 500) return onEnd(err);
      }
      if (!ended && !ctl.signal.aborted) await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return () => ctl.abort();
}

const LIVE = new Set(['running', 'waiting', 'starting', 'budget_exhausted']);

/**
 * The running model call's text, from its deltas (common/deltas.ts `LiveText`, in JS): a delta of an
 * older attempt or of a call a `model.call` event has ended is ignored, repeats are cut, a gap
 * (joined mid-call, a lost delta) is shown as `…`. The `model.call` event replaces it.
 */
function liveText(timeline) {
  let key;
  let end = 0;
  let endedThrough = 0;
  let el;
  let pre;
  const drop = () => {
    el?.remove();
    el = undefined;
    key = undefined;
    end = 0;
  };
  return {
    add(d) {
      if (d.afterSeq < endedThrough) return;
      if (!key || d.afterSeq > key.afterSeq || (d.afterSeq === key.afterSeq && d.attempt > key.attempt)) {
        drop();
        key = { afterSeq: d.afterSeq, attempt: d.attempt };
        pre = h('pre', { className: 'model-text' });
        el = h('li', { className: 'model live', id: 'live-text', 'data-step': d.step, 'data-attempt': d.attempt }, h('div', { className: 'meta' }, `model turn (step ${d.step}) · generating${d.attempt > 1 ? ` · attempt ${d.attempt}` : ''}…`), pre);
        timeline.append(el);
      } else if (d.afterSeq < key.afterSeq || d.attempt < key.attempt) return;
      let out = '';
      if (d.offset > end) {
        out = '…';
        end = d.offset;
      }
      out += d.text.slice(end - d.offset);
      end = Math.max(end, d.offset + d.text.length);
      if (out) pre.append(out);
    },
    /** A model.call event with this seq ended the running call. */
    ended(seq) {
      endedThrough = Math.max(endedThrough, seq);
      if (key && key.afterSeq < seq) drop();
    },
    /** Keep the live entry last when other events arrive meanwhile. */
    keepLast() {
      if (el) timeline.append(el);
    },
  };
}

function sessionPage(id) {
  const head = h('div');
  const pending = h('section', { id: 'pending', hidden: true });
  const diffBox = h('section', { id: 'diff', hidden: true });
  const timeline = h('ol', { className: 'timeline', id: 'timeline' });
  const streamState = h('span', { className: 'meta', id: 'stream-state' }, 'connecting…');
  let status = '';

  const message = form({ id: 'message' }, [h('div', { className: 'row' }, h('input', { type: 'text', name: 'text', id: 'message-text', placeholder: 'a message the model sees on its next turn', required: true }), h('button', { type: 'submit' }, 'Send'))], async (f) => {
    await api('POST', `/sessions/${enc(id)}/messages`, { text: f.text.value });
    f.text.value = '';
  });
  const messageBox = h('section', { hidden: true }, h('h2', {}, 'Send a message'), message);
  const controls = form({ id: 'controls', hidden: true }, [h('div', { className: 'row' }, h('input', { type: 'text', name: 'reason', placeholder: 'reason for cancelling (optional)' }), h('button', { type: 'submit', name: 'cancel', value: 'cancel' }, 'Cancel session'), h('button', { type: 'submit', name: 'close', value: 'close' }, 'Close (end a kept-alive session)'))], async (f, submitter) => {
    if (submitter?.value === 'close') await api('POST', `/sessions/${enc(id)}/close`);
    else await api('POST', `/sessions/${enc(id)}/cancel`, f.reason.value ? { reason: f.reason.value } : {});
  });

  async function refresh() {
    try {
      const d = await api('GET', `/sessions/${enc(id)}`);
      status = d.session.status;
      const spent = d.spent ?? {};
      head.replaceChildren(
        h('h1', {}, id, ' ', statusBadge(status)),
        h('p', {}, d.session.task),
        h('p', { className: 'meta' }, `tenant ${d.session.tenant} · model ${d.session.model} · ${d.steps.length} steps · tokens ${fmtInt(spent.inputTokens)} in / ${fmtInt(spent.outputTokens)} out · ${fmtUsd(spent.usd)} · started ${d.session.createdAt ?? ''}`),
      );
      controls.hidden = !LIVE.has(status);
      messageBox.hidden = !LIVE.has(status);
      renderPending(d.pending);
    } catch (err) {
      head.replaceChildren(h('h1', {}, id), errorLine(err));
    }
  }

  let pendingShown;
  function renderPending(list) {
    // The same calls still waiting: keep the forms as they are (a reason being typed, a "say why" shown).
    const ids = list.map((p) => p.callId).join('\n');
    if (ids === pendingShown) return;
    pendingShown = ids;
    pending.hidden = list.length === 0;
    pending.replaceChildren(
      h('h2', {}, `Waiting for approval (${list.length})`),
      ...list.map((p) =>
        h(
          'div',
          { 'data-call': p.callId },
          h('p', {}, h('strong', {}, p.tool), ` call ${p.callId} · waiting since ${p.since} · times out after ${p.timeoutSec}s`),
          p.reason ? h('p', { className: 'meta' }, `policy: ${p.reason}`) : null,
          h('pre', {}, json(p.input)),
          form({ className: 'answer' }, [h('div', { className: 'row' }, h('button', { type: 'submit', value: 'approve', name: 'approve' }, 'Approve'), h('input', { type: 'text', name: 'reason', placeholder: 'reason (needed to deny)' }), h('button', { type: 'submit', value: 'deny', name: 'deny' }, 'Deny'))], async (f, submitter) => {
            const base = `/sessions/${enc(id)}/approvals/${enc(p.callId)}`;
            if (submitter?.value === 'deny') {
              if (!f.reason.value.trim()) throw new Error('say why: the model gets the reason');
              await api('POST', `${base}/deny`, { reason: f.reason.value.trim() });
            } else await api('POST', `${base}/approve`, {});
            await refresh();
          }),
        ),
      ),
    );
  }

  async function showDiff(step) {
    diffBox.hidden = false;
    diffBox.replaceChildren(h('h2', {}, `Files step ${step} changed`), h('p', { className: 'meta' }, 'loading…'));
    try {
      const d = await api('GET', `/sessions/${enc(id)}/steps/${step}/diff`);
      const describe = (e) => (e.type === 'dir' ? `${e.path}/` : e.type === 'symlink' ? `${e.path} -> ${e.target}` : `${e.path} (${e.size} B)`);
      const lines = [...d.added.map((e) => `A ${describe(e)}`), ...d.modified.map((m) => `M ${m.after.path}`), ...d.removed.map((e) => `D ${describe(e)}`)];
      diffBox.replaceChildren(
        h('h2', {}, `Files step ${step} changed`, ' ', h('button', { type: 'button', onclick: () => (diffBox.hidden = true) }, 'hide')),
        h('p', { className: 'meta' }, d.after ? `snapshot ${d.after.slice(0, 12)} vs ${d.before ? d.before.slice(0, 12) : 'the empty sandbox'}: ${d.added.length} added, ${d.modified.length} modified, ${d.removed.length} removed` : 'this step changed no files'),
        h('ul', { className: 'changes' }, ...lines.map((l) => h('li', {}, l))),
        ...Object.entries(d.textDiffs).map(([, text]) =>
          h(
            'pre',
            { className: 'diff' },
            ...text.split('\n').map((line) => h('span', { className: line.startsWith('+') && !line.startsWith('+++') ? 'add' : line.startsWith('-') && !line.startsWith('---') ? 'del' : line.startsWith('@@') ? 'hunk' : '' }, line, '\n')),
          ),
        ),
      );
      diffBox.scrollIntoView({ block: 'nearest' });
    } catch (err) {
      diffBox.replaceChildren(h('h2', {}, `Files step ${step} changed`), errorLine(err));
    }
  }

  let refreshSoon;
  const live = liveText(timeline);
  const onEvent = (e) => {
    if (e.type === 'model.call') live.ended(e.seq);
    timeline.append(renderEvent(e, showDiff));
    live.keepLast();
    if (/^(session\.|approval\.|budget\.|tool\.result|message\.user)/.test(e.type)) {
      clearTimeout(refreshSoon);
      refreshSoon = setTimeout(refresh, 150);
    }
  };
  let connects = 0;
  const stop = followStream(
    id,
    onEvent,
    (err) => {
      streamState.textContent = err ? `stream closed: ${err.message}` : 'ended: the stream is closed';
      streamState.dataset.ended = 'true';
      refresh();
    },
    () => {
      connects++;
      streamState.dataset.connects = String(connects);
      streamState.textContent = connects > 1 ? `live (reconnected ${connects - 1}×)` : 'live';
    },
    (d) => live.add(d),
  );
  leave = () => {
    stop();
    clearTimeout(refreshSoon);
  };

  main.append(
    h('p', {}, h('a', { href: '#/' }, '← sessions')),
    head,
    h('div', { className: 'row' }, controls),
    pending,
    messageBox,
    diffBox,
    h('section', {}, h('h2', {}, 'Timeline ', streamState), timeline),
  );
  refresh();
}

/** One event as a timeline entry. */
function renderEvent(e, showDiff) {
  const d = e.data ?? {};
  const at = new Date(e.at).toLocaleTimeString();
  const li = (cls, title, ...rest) => h('li', { className: cls, 'data-seq': e.seq, 'data-type': e.type }, h('div', { className: 'meta' }, `#${e.seq} ${at} · ${e.type}`), h('div', {}, title), ...rest);
  switch (e.type) {
    case 'session.started':
      return li('', `started: ${d.task}`, h('div', { className: 'meta' }, `model ${d.model} · tenant ${d.tenant} · up to ${d.maxSteps} steps`));
    case 'model.call':
      return li(
        'model',
        `model turn (step ${d.step})${d.copiedFrom ? ' · copied from the forked session' : ''}`,
        d.text ? h('pre', { className: 'model-text' }, d.text + (d.textRef ? '\n… (preview; the whole text is in the blob store)' : '')) : null,
        (d.toolCalls ?? []).length ? h('div', { className: 'meta' }, `asks for: ${d.toolCalls.map((c) => c.name).join(', ')}`) : null,
        h('div', { className: 'meta' }, `${fmtInt(d.usage?.inputTokens)} in / ${fmtInt(d.usage?.outputTokens)} out tokens · ${d.finishReason ?? ''} · ${fmtInt(d.durationMs)} ms`),
      );
    case 'tool.call':
      return li('tool', `call ${d.name} (step ${d.step}, ${d.callId})`, h('pre', { className: 'tool-input' }, typeof d.input === 'string' ? d.input : json(d.input)));
    case 'tool.result':
      return li(
        d.ok ? 'tool' : 'tool fail',
        `${d.name} ${d.ok ? 'ok' : 'failed'}${d.exitCode !== undefined ? ` · exit ${d.exitCode}` : ''}${d.error ? ` · ${d.error}` : ''}${d.durationMs !== undefined ? ` · ${d.durationMs} ms` : ''}${d.injected ? ` · injected fault: ${d.injected}` : ''}`,
        h('pre', { className: 'tool-output' }, d.output === '' ? '(no output)' : d.output, d.outputRef ? '\n… (preview; the whole output is in the blob store)' : ''),
        d.snapshot ? h('button', { type: 'button', className: 'show-diff', 'data-step': d.step, onclick: () => showDiff(d.step) }, `files changed by step ${d.step}`) : null,
      );
    case 'message.user':
      return li('person', 'message', h('pre', {}, d.text));
    case 'approval.requested':
      return li('person', `${d.tool} waits for approval (${d.callId})${d.reason ? `: ${d.reason}` : ''}`, h('pre', {}, json(d.input)));
    case 'approval.decided':
      return li('person', `${d.callId}: ${d.decision} by ${d.by}${d.reason ? ` (${d.reason})` : ''} after ${d.waitedSec}s`);
    case 'sandbox.provisioned':
      return li('sandbox', `sandbox ${d.generation} on ${d.hostId} (${d.image})`);
    case 'sandbox.restored':
      return li('sandbox', `sandbox restored as generation ${d.generation}${d.snapshot ? ` from ${d.snapshot.slice(0, 12)}` : ''}: ${d.reason}`);
    case 'sandbox.suspended':
      return li('sandbox', `sandbox suspended: ${d.reason}${d.lost ? ` (already gone: ${d.lost})` : ''}`);
    case 'sandbox.resumed':
      return li('sandbox', `sandbox resumed as generation ${d.generation}${d.snapshot ? ` from ${d.snapshot.slice(0, 12)}` : ''}`);
    case 'sandbox.removed':
      return li('sandbox', `sandbox removed${d.snapshot ? ` (last snapshot ${d.snapshot.slice(0, 12)})` : ''}`);
    case 'session.status':
      return li('', `status: ${d.status}${d.reason ? ` (${d.reason})` : ''}`);
    case 'session.error':
      return li('fail', `error: ${d.message}`);
    case 'session.ended':
      return li(
        d.status === 'completed' ? 'person' : 'fail',
        `ended: ${d.status}${d.reason ? ` (${d.reason})` : ''} · ${d.steps} steps`,
        d.summary ? h('pre', {}, d.summary) : null,
        d.error ? h('pre', { className: 'error' }, d.error) : null,
      );
    default:
      return li('', e.type, h('details', {}, h('summary', {}, 'data'), h('pre', {}, json(d))));
  }
}

route();
