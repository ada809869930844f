// feedd embed script. It finds every [data-feedd] element, and either
// enhances the server-rendered fragment it holds (the same nodes, moved into
// a shadow root) or fetches that fragment from feedd and inserts it. It only
// ever talks to the origin it was loaded from, inserts no markup but feedd's
// own server-escaped fragment, and never throws into the host page.
import css from './widget.css'
// The widget's own texts in English; other languages come from the file the
// fragment names (data-lang-src), the owner's from data-i18n-* attributes.
import { post, close, previous, next, view, watch, count } from '../i18n/en.json'

const W = window
const D = document

if (!W.feedd) {
  const script = D.currentScript
  // Where feedd lives: the script's URL without /widget.js, so a feedd
  // behind a path prefix works too.
  const base = script ? script.src.replace(/\/widget\.js([?#].*)?$/, '') : ''
  const keys = ['columns', 'limit', 'gap', 'layout', 'captions', 'header', 'lightbox', 'load-more', 'theme', 'type', 'lang', 'counts']
  // The languages feedd has, from the build: a page's lang picks one.
  const langs = LANGS
  const seen = new WeakSet()
  let sheet
  let queue = Promise.resolve()

  const warn = (id, why) => console.warn(`feedd: feed "${id}" not shown (${why})`)

  const mk = (tag, cls, parent, text) => {
    const e = D.createElement(tag)
    e.className = cls
    if (text) e.textContent = text
    parent.append(e)
    return e
  }

  // fetchRoot loads a fragment and returns its root element. DOMParser
  // documents run no scripts and load no images until nodes are adopted.
  const fetchRoot = async (url) => {
    const r = await fetch(url, { credentials: 'omit' })
    if (!r.ok) throw 'HTTP ' + r.status
    const root = new DOMParser().parseFromString(await r.text(), 'text/html').querySelector('.feedd')
    if (!root) throw 'not a feedd fragment'
    return root
  }

  // prep paints the dominant colour under each image and gives images that
  // have not started loading a `sizes` of their real box, so the browser
  // picks the smallest adequate file (a cropped landscape needs more width).
  const prep = (items, all) => {
    for (const li of items) {
      const img = li.querySelector('img')
      if (!img) continue
      if (li.dataset.color) img.style.backgroundColor = li.dataset.color
      if (all || (img.loading == 'lazy' && !img.complete)) {
        // The tile, also when a <picture> wraps the image.
        const b = img.closest('a')
        const w = +img.getAttribute('width')
        const h = +img.getAttribute('height')
        // A <picture>'s <source>s choose by their own sizes.
        if (b.clientWidth && w && h)
          for (const e of li.querySelectorAll('a source,a img')) e.sizes = Math.ceil(Math.max(b.clientWidth, (b.clientHeight * w) / h)) + 'px'
      }
    }
  }

  const enhance = (root, id, fresh) => {
    const d = root.dataset
    const list = root.querySelector('.feedd-list')
    const items = list.children
    if (d.gap) root.style.setProperty('--feedd-gap', d.gap + 'px')
    prep(items, fresh)

    const more = root.querySelector('.feedd-more')
    if (more) {
      let busy
      more.addEventListener('click', (e) => {
        e.preventDefault()
        if (busy) return
        busy = list.ariaBusy = 'true'
        fetchRoot(more.dataset.next)
          .then((next) => {
            const added = [...next.querySelector('.feedd-list').children]
            list.append(...added)
            prep(added, 1)
            const m = next.querySelector('.feedd-more')
            if (added[0]) added[0].querySelector('a').focus()
            if (m) {
              more.href = m.href
              more.dataset.next = m.dataset.next
            } else more.parentNode.remove()
          })
          .catch((err) => warn(id, err))
          .finally(() => (busy = list.ariaBusy = null))
      })
    }

    if (d.lightbox != 'true') return
    const t = { post, close, previous, next, view, watch, count }
    const own = {}
    for (const k in t) own[k] = root.getAttribute('data-i18n-' + k)
    const use = (o) => {
      for (const k in t) if (o[k]) t[k] = o[k]
    }
    use(own)
    let dlg, fig, img, cap, go, num, i, j
    // The dialog's labels, set again when the language file arrives.
    const label = () => {
      if (!dlg) return
      dlg.ariaLabel = t.post
      for (const b of fig.querySelectorAll('button')) b.ariaLabel = t[b.name]
    }
    if (d.langSrc)
      fetch(d.langSrc)
        .then((r) => r.json())
        .then((o) => {
          use(o)
          use(own)
          label()
        })
        .catch((err) => warn(id, err))
    const rtl = getComputedStyle(root).direction == 'rtl'
    // kids lists the images of post i: its carousel children, else its tile.
    const kids = (li) => {
      const t = li.querySelector('template')
      return t ? t.content.children : [li.querySelector('img')]
    }
    const show = () => {
      const li = items[i]
      const k = kids(li)
      const src = k[j]
      const w = +src.getAttribute('width')
      const h = +src.getAttribute('height')
      // Fit the box to the viewport before the file arrives: no jump.
      const s = Math.min(1, (innerWidth - 16) / w, (innerHeight * 0.78) / h)
      // A stored video plays here, its cover as poster; no autoplay.
      const v = !j && li.dataset.video
      const n = D.createElement(v ? 'video' : 'img')
      if (v) {
        n.src = v
        n.poster = (src.getAttribute('srcset') || '').split(',').pop().trim().split(' ')[0] || src.src
        n.controls = n.playsInline = true
        n.preload = 'metadata'
        n.ariaLabel = src.alt
      } else for (const a of ['src', 'srcset', 'alt', 'width', 'height']) n.setAttribute(a, src.getAttribute(a) || '')
      n.sizes = Math.ceil(w * s) + 'px'
      n.style.width = w * s + 'px'
      n.style.height = h * s + 'px'
      const c = (src.dataset.color || li.dataset.color)
      if (c) n.style.backgroundColor = c
      stop()
      img.replaceWith(n)
      img = n
      const video = !v && (src.dataset.type || li.dataset.type) == 'video'
      go.textContent = video ? t.watch : t.view
      go.href = li.querySelector('a').href
      // In a feed of several accounts, a post of another account than the
      // header's says whose it is.
      const c0 = (li.querySelector('.feedd-cap') || {}).textContent || ''
      cap.textContent = li.dataset.user ? '@' + li.dataset.user + (c0 && ': ' + c0) : c0
      num.textContent = k.length > 1 ? t.count.replace('{i}', j + 1).replace('{n}', k.length) : ''
      label()
    }
    // A video taken out of the page would play on, unseen.
    const stop = () => img.pause && img.pause()
    const nav = (step) => {
      const n = kids(items[i]).length
      if (j + step >= 0 && j + step < n) j += step
      else if (items[i + step]) {
        i += step
        j = 0
      } else return
      show()
    }
    // A button's name is the key of its label, set on each show: the
    // language file may arrive after the dialog was built.
    const button = (name, text, fn) => {
      const b = mk('button', 'feedd-' + name, fig, text)
      b.type = 'button'
      b.name = name
      b.addEventListener('click', fn)
    }
    const build = () => {
      dlg = mk('dialog', 'feedd-lb', root)
      // The dialog itself takes focus on open: were it the close button, the
      // keypress of the Enter that opened the dialog would press it.
      dlg.tabIndex = -1
      fig = mk('figure', 'feedd-fig', dlg)
      img = mk('img', '', fig)
      button('close', '×', () => dlg.close())
      button('previous', '‹', () => nav(-1))
      button('next', '›', () => nav(1))
      cap = mk('p', '', dlg)
      // Captions are in the author's language, whatever the feed's.
      cap.dir = 'auto'
      const bar = mk('div', 'feedd-bar', dlg)
      go = mk('a', 'feedd-go', bar)
      go.target = '_blank'
      go.rel = 'noopener'
      num = mk('span', 'feedd-n', bar)
      num.ariaLive = 'polite'
      dlg.addEventListener('keydown', (e) => {
        // Right to left, the next post is on the left.
        const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key] * (rtl ? -1 : 1)
        // On a video, the arrows seek.
        if (step && e.target != img) {
          e.preventDefault()
          nav(step)
        }
        // Tab wraps inside the dialog instead of leaving for the browser.
        if (e.key == 'Tab') {
          const f = dlg.querySelectorAll('video,button,a[href]')
          const a = dlg.getRootNode().activeElement
          if (a == f[e.shiftKey ? 0 : f.length - 1] || (e.shiftKey && a == dlg)) {
            e.preventDefault()
            f[e.shiftKey ? f.length - 1 : 0].focus()
          }
        }
      })
      // A click on the backdrop lands on the dialog itself.
      dlg.addEventListener('click', (e) => e.target == dlg && dlg.close())
      let x0
      dlg.addEventListener('touchstart', (e) => (x0 = e.touches[0].clientX), { passive: true })
      dlg.addEventListener(
        'touchend',
        (e) => {
          const dx = e.changedTouches[0].clientX - x0
          if (Math.abs(dx) > 40) nav(dx < 0 != rtl ? 1 : -1)
        },
        { passive: true }
      )
      dlg.addEventListener('close', () => {
        stop()
        items[i].querySelector('a').focus()
      })
    }
    list.addEventListener('click', (e) => {
      const a = e.target.closest('.feedd-tile')
      // Let modified clicks open the post in a new tab as links do.
      if (!a || e.button || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return
      e.preventDefault()
      if (!dlg) build()
      i = [...items].indexOf(a.parentNode)
      j = 0
      show()
      dlg.showModal()
      dlg.focus()
    })
  }

  // mount moves root into a shadow root on host: the same nodes, so loaded
  // images stay and nothing flashes. A bare fragment gets a new host.
  const mount = (host, root, id, fresh) => {
    if (host == root) {
      host = D.createElement('div')
      root.before(host)
    }
    const sr = host.attachShadow({ mode: 'open' })
    sheet = sheet || new CSSStyleSheet()
    if (!sheet.cssRules.length) sheet.replaceSync(css)
    sr.adoptedStyleSheets = [sheet]
    sr.append(root)
    enhance(root, id, fresh)
  }

  const setup = (el) => {
    if (seen.has(el)) return
    seen.add(el)
    const id = el.dataset.feedd
    try {
      const root = el.classList.contains('feedd') ? el : el.querySelector('.feedd')
      if (root) {
        seen.add(root)
        return mount(el, root, id)
      }
      const q = new URLSearchParams()
      for (const k of keys) if (el.hasAttribute('data-' + k)) q.set(k, el.getAttribute('data-' + k))
      // Without data-lang, the page's language when feedd has it.
      const l = D.documentElement.lang.toLowerCase().split(/[-_]/)[0]
      if (!q.has('lang') && l != 'en' && langs.includes(l)) q.set('lang', l)
      for (const a of el.attributes) if (a.name.startsWith('data-i18n-')) q.set(a.name.slice(5), a.value)
      // Fetch at once, insert in document order: a feed arriving first
      // never gets pushed down by one above it arriving later.
      // (Promise.all handles a fast failure at once: no unhandled rejection.)
      queue = Promise.all([queue, fetchRoot(`${base}/feeds/${encodeURIComponent(id)}.html?${q}`)])
        .then(([, root]) => mount(el, root, id, 1))
        .catch((err) => warn(id, err))
    } catch (err) {
      warn(id, err)
    }
  }

  const scan = (node) => {
    if (node.nodeType != 1) return
    if (node.matches('[data-feedd]')) setup(node)
    node.querySelectorAll('[data-feedd]').forEach(setup)
  }

  // Wait for the parser so a server-rendered fragment is whole before it is
  // judged; then watch for elements added later (single-page apps).
  const start = () => {
    scan(D.documentElement)
    new MutationObserver((ms) => ms.forEach((m) => m.addedNodes.forEach(scan))).observe(D.documentElement, {
      childList: true,
      subtree: true,
    })
  }
  W.feedd = { scan: () => scan(D.documentElement) }
  if (D.readyState == 'loading') D.addEventListener('DOMContentLoaded', start)
  else start()
}
