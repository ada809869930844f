// feedd's setup pages work without this script; with it, the feed page's
// options update the snippet and the preview without a page load, and
// URLs and the snippet get copy buttons. No framework, no build step.
'use strict';

(() => {
  const live = document.createElement('p');
  live.className = 'visually-hidden';
  live.setAttribute('aria-live', 'polite');
  document.body.append(live);
  const say = (msg) => { live.textContent = ''; setTimeout(() => { live.textContent = msg; }, 50); };

  // Copy buttons. Without the script the text stays selectable.
  const copyText = async (el) => {
    const text = 'value' in el ? el.value : el.textContent;
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Not a secure context, or refused: select it for the owner instead.
      const range = document.createRange();
      if (el.select) el.select(); else { range.selectNodeContents(el); getSelection().removeAllRanges(); getSelection().addRange(range); }
      return document.execCommand && document.execCommand('copy');
    }
  };
  for (const el of document.querySelectorAll('.copy, [data-copy]')) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'secondary small copy-button';
    b.textContent = 'Copy';
    const label = el.id ? document.querySelector(`label[for="${el.id}"]`) : el.closest('.url')?.querySelector('dt');
    if (label) b.setAttribute('aria-label', 'Copy: ' + label.textContent.trim());
    b.addEventListener('click', async () => {
      const ok = await copyText(el);
      b.textContent = ok ? 'Copied' : 'Selected';
      say(ok ? 'Copied to the clipboard.' : 'Selected: press Ctrl+C or ⌘C to copy.');
      setTimeout(() => { b.textContent = 'Copy'; }, 2000);
    });
    el.after(b);
  }

  // The preview frame follows its content's height, so the feed shows whole.
  const fit = (frame) => {
    const doc = frame.contentDocument;
    if (!doc || !doc.documentElement) return;
    // The frame's height includes its borders (border-box).
    const size = () => { frame.style.height = Math.ceil(doc.documentElement.scrollHeight + frame.offsetHeight - frame.clientHeight) + 'px'; };
    size();
    if (window.ResizeObserver && doc.body) new ResizeObserver(size).observe(doc.body);
  };
  for (const frame of document.querySelectorAll('[data-preview-frame]')) {
    frame.addEventListener('load', () => fit(frame));
    if (frame.contentDocument && frame.contentDocument.readyState === 'complete') fit(frame);
  }

  // The snippet shows whole, however narrow the screen.
  const snippet = document.getElementById('snippet');
  const grow = () => {
    if (!snippet) return;
    snippet.style.height = 'auto';
    snippet.style.height = (snippet.scrollHeight + snippet.offsetHeight - snippet.clientHeight) + 'px';
  };
  grow();
  addEventListener('resize', grow);

  // Live options: the server builds the snippet and the preview's URL
  // (one rule, in Go); this only asks for them and shows them.
  const form = document.querySelector('form[data-preview]');
  if (!form) return;
  for (const b of form.querySelectorAll('[data-nojs]')) b.hidden = true;
  const error = document.getElementById('options-error');
  const frame = document.querySelector('[data-preview-frame]');
  let timer = 0;
  let pending = null;

  const update = async () => {
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v !== '') params.append(k, v);
    if (pending) pending.abort();
    const ctl = new AbortController();
    pending = ctl;
    let res, body;
    try {
      res = await fetch(form.dataset.preview + '?' + params, {signal: ctl.signal, credentials: 'same-origin', headers: {Accept: 'application/json'}});
      body = await res.json();
    } catch (e) {
      if (e.name === 'AbortError') return;
      body = {error: {message: 'The preview could not be updated: ' + e.message}};
      res = null;
    }
    if (pending !== ctl) return;
    pending = null;
    if (!res || !res.ok) {
      error.textContent = (body && body.error && body.error.message) || 'The preview could not be updated.';
      error.hidden = false;
      form.setAttribute('aria-invalid', 'true');
      return;
    }
    error.hidden = true;
    error.textContent = '';
    form.removeAttribute('aria-invalid');
    if (snippet) {
      snippet.value = body.snippet;
      grow();
    }
    if (frame && frame.getAttribute('src') !== body.preview) frame.src = body.preview;
    // Keep the options in the address, so a reload or a shared link shows them.
    const q = body.preview.includes('?') ? body.preview.slice(body.preview.indexOf('?')) : '';
    history.replaceState(null, '', location.pathname + q + location.hash);
    say('Snippet and preview updated.');
  };

  const soon = () => { clearTimeout(timer); timer = setTimeout(update, 250); };
  form.addEventListener('input', soon);
  form.addEventListener('change', soon);
  form.addEventListener('submit', (ev) => { ev.preventDefault(); clearTimeout(timer); update(); });
})();
