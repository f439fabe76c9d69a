// The canvas page: a whiteboard on one room of the node (y-websocket to /yjs/{room}), with
// live cursors and a chat panel whose messages carry the room, so the assistant sees the
// board. Bundled by scripts/build-canvas-page; the data model is docs/canvas.md's.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { connectChat } from './chat.js'
import { render, itemAt, bounds } from './render.js'
import { localize, t } from './strings.js'

localize(document)

const room = decodeURIComponent(location.pathname.replace(/^\/canvas\//, ''))
const $ = (id) => document.getElementById(id)
const svg = $('board')
const world = $('world')
const statusLine = $('status')
const LOCAL = { local: true } // the origin of this page's own edits: what its undo tracks
const COLORS = ['#fde68a', '#bbf7d0', '#bfdbfe', '#fecaca', '#e9d5ff', '#1f2937']
const PEN_COLORS = ['#1f2937', '#2563eb', '#dc2626', '#16a34a', '#7c3aed', '#ea580c']

// ---- who I am -------------------------------------------------------------------------
const stored = (key, make) => {
  let value = localStorage.getItem(key)
  if (!value) { value = make(); localStorage.setItem(key, value) }
  return value
}
let myName = stored('troupe.name', () => t('guest', { n: Math.floor(100 + Math.random() * 900) }))
const myColor = stored('troupe.color', () => PEN_COLORS[Math.floor(Math.random() * PEN_COLORS.length)])

// ---- the document and the connection --------------------------------------------------
const doc = new Y.Doc()
const items = doc.getMap('items')
// One undo step per action (a gesture, a new note with its text, a deletion), however long
// it takes: steps are cut by `newAction`, never by time.
const undo = new Y.UndoManager(items, { trackedOrigins: new Set([LOCAL]), captureTimeout: Number.MAX_SAFE_INTEGER })
const newAction = () => undo.stopCapturing()

function ownerHeaders () {
  const token = localStorage.getItem('troupe.token')
  return token ? { Authorization: 'Bearer ' + token } : {}
}

// A short-lived write token for this room (the node's own token never goes in a URL).
async function roomToken () {
  for (let attempt = 0; attempt < 3; attempt++) {
    const answer = await fetch('/api/v1/canvas/' + encodeURIComponent(room) + '/tokens', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...ownerHeaders() },
      body: JSON.stringify({ access: 'write' })
    })
    if (answer.ok) return (await answer.json()).token
    if (answer.status === 401) {
      const entered = prompt(t('askToken'))
      if (!entered) break
      localStorage.setItem('troupe.token', entered)
      continue
    }
    const body = await answer.json().catch(() => ({}))
    throw new Error((body.error && body.error.message) || t('refused', { status: answer.status }))
  }
  throw new Error(t('noToken'))
}

const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://'
let provider = null

async function start () {
  let token
  try { token = await roomToken() } catch (error) { showStatus('error', error.message); return }
  provider = new WebsocketProvider(scheme + location.host + '/yjs', room, doc, {
    params: { token }, disableBc: true, maxBackoffTime: 2000
  })
  provider.on('status', ({ status }) => {
    if (status === 'connected') showStatus('connected', t('connected'))
    else if (status === 'connecting') showStatus('connecting', t('connecting'))
    else showStatus('offline', t('offline'))
  })
  provider.on('sync', (synced) => { if (synced) showStatus('synced', t('synced')) })
  provider.on('connection-close', (event) => {
    // An expired or revoked room token: mint a new one before the next attempt.
    if (event && event.code === 1008 && /token/.test(event.reason)) {
      roomToken().then((fresh) => { provider.params.token = fresh }, (error) => showStatus('error', error.message))
    }
  })
  setupPresence(provider.awareness)
  connectChat(room, $('chat-log'), $('chat-form'), $('chat-input'))
}

function showStatus (kind, text) {
  statusLine.textContent = text
  statusLine.dataset.state = kind
}

// ---- view: pan and zoom ---------------------------------------------------------------
const view = { x: 40, y: 40, zoom: 1 }
function applyView () {
  world.setAttribute('transform', `translate(${view.x} ${view.y}) scale(${view.zoom})`)
  $('zoom').textContent = Math.round(view.zoom * 100) + '%'
}
function toWorld (event) {
  const box = svg.getBoundingClientRect()
  return { x: (event.clientX - box.left - view.x) / view.zoom, y: (event.clientY - box.top - view.y) / view.zoom }
}
function zoomAt (screenX, screenY, factor) {
  const zoom = Math.min(4, Math.max(0.2, view.zoom * factor))
  view.x = screenX - (screenX - view.x) * (zoom / view.zoom)
  view.y = screenY - (screenY - view.y) * (zoom / view.zoom)
  view.zoom = zoom
  applyView()
}
svg.addEventListener('wheel', (event) => {
  event.preventDefault()
  const box = svg.getBoundingClientRect()
  zoomAt(event.clientX - box.left, event.clientY - box.top, Math.exp(-event.deltaY * 0.0015))
}, { passive: false })

// ---- tools and selection --------------------------------------------------------------
let tool = 'select'
let color = COLORS[0]
const selected = new Set()
function setTool (name) {
  tool = name
  for (const button of document.querySelectorAll('[data-tool]')) button.classList.toggle('active', button.dataset.tool === name)
  svg.dataset.tool = name
}
for (const button of document.querySelectorAll('[data-tool]')) button.addEventListener('click', () => setTool(button.dataset.tool))
for (const swatch of COLORS) {
  const button = document.createElement('button')
  button.className = 'swatch'
  button.style.background = swatch
  button.title = swatch
  button.addEventListener('click', () => {
    color = swatch
    newAction()
    change(() => { for (const id of selected) items.get(id)?.set('color', swatch) })
  })
  $('colors').appendChild(button)
}

function change (edit) { doc.transact(edit, LOCAL) }
function newId () { return 'i' + crypto.getRandomValues(new Uint32Array(2)).join('').slice(0, 12) }
function topZ () { let top = 0; items.forEach((item) => { top = Math.max(top, item.get('z') || 0) }); return top + 1 }
function addItem (fields) {
  const id = newId()
  change(() => {
    const item = new Y.Map()
    for (const [key, value] of Object.entries({ ...fields, author: myName, z: topZ() })) item.set(key, value)
    items.set(id, item)
  })
  return id
}
function deleteSelected () {
  if (selected.size === 0) return
  newAction()
  change(() => {
    items.forEach((item, id) => {
      if (item.get('type') === 'arrow' && (selected.has(item.get('from')) || selected.has(item.get('to')))) items.delete(id)
    })
    for (const id of selected) items.delete(id)
  })
  selected.clear()
  redraw()
}

// ---- pointer gestures -----------------------------------------------------------------
let gesture = null
svg.addEventListener('pointerdown', (event) => {
  event.preventDefault() // no text selection, and the focus stays where editing put it
  if (editing) finishEditing()
  newAction()
  const at = toWorld(event)
  const target = event.target.closest('[data-id]')
  const id = target && target.dataset.id
  const handle = event.target.closest('[data-handle]')
  svg.setPointerCapture(event.pointerId)
  if (event.button === 1 || event.button === 2 || (tool === 'select' && !id && !handle)) {
    selected.clear()
    gesture = { kind: 'pan', from: { x: event.clientX, y: event.clientY }, view: { ...view } }
  } else if (handle) {
    const item = items.get(handle.dataset.handle)
    gesture = { kind: 'resize', id: handle.dataset.handle, from: at, size: { w: item.get('w') || 160, h: item.get('h') || 100 } }
  } else if (tool === 'select') {
    if (!selected.has(id)) { if (!event.shiftKey) selected.clear(); selected.add(id) }
    const origins = new Map([...selected].map((each) => [each, { x: items.get(each)?.get('x') || 0, y: items.get(each)?.get('y') || 0 }]))
    gesture = { kind: 'move', from: at, origins }
  } else if (tool === 'note' || tool === 'text') {
    const created = addItem(tool === 'note'
      ? { type: 'note', text: '', x: at.x - 80, y: at.y - 50, w: 160, h: 100, color }
      : { type: 'text', text: '', x: at.x, y: at.y - 12, w: 200, h: 32, color: '#1f2937' })
    selected.clear(); selected.add(created)
    setTool('select')
    gesture = { kind: 'write', id: created }
  } else if (tool === 'rect' || tool === 'ellipse') {
    const created = addItem({ type: tool, x: at.x, y: at.y, w: 1, h: 1, color })
    gesture = { kind: 'size', id: created, from: at }
  } else if (tool === 'arrow' && id) {
    gesture = { kind: 'arrow', from: id, start: at, end: at }
  } else if (tool === 'pen') {
    const created = addItem({ type: 'stroke', x: at.x, y: at.y, points: [[0, 0]], color: myColor })
    gesture = { kind: 'pen', id: created, origin: at, points: [[0, 0]], dirty: false }
  }
  redraw()
})

svg.addEventListener('pointermove', (event) => {
  const at = toWorld(event)
  shareCursor(at)
  if (!gesture) return
  if (gesture.kind === 'pan') {
    view.x = gesture.view.x + event.clientX - gesture.from.x
    view.y = gesture.view.y + event.clientY - gesture.from.y
    applyView()
  } else if (gesture.kind === 'move') {
    const dx = at.x - gesture.from.x
    const dy = at.y - gesture.from.y
    change(() => {
      for (const [id, origin] of gesture.origins) {
        const item = items.get(id)
        if (item) { item.set('x', Math.round(origin.x + dx)); item.set('y', Math.round(origin.y + dy)) }
      }
    })
  } else if (gesture.kind === 'resize') {
    const item = items.get(gesture.id)
    if (item) change(() => {
      item.set('w', Math.max(20, Math.round(gesture.size.w + at.x - gesture.from.x)))
      item.set('h', Math.max(20, Math.round(gesture.size.h + at.y - gesture.from.y)))
    })
  } else if (gesture.kind === 'size') {
    const item = items.get(gesture.id)
    if (item) change(() => {
      item.set('x', Math.round(Math.min(at.x, gesture.from.x))); item.set('y', Math.round(Math.min(at.y, gesture.from.y)))
      item.set('w', Math.round(Math.abs(at.x - gesture.from.x))); item.set('h', Math.round(Math.abs(at.y - gesture.from.y)))
    })
  } else if (gesture.kind === 'arrow') {
    gesture.end = at
    redraw()
  } else if (gesture.kind === 'pen') {
    gesture.points.push([Math.round(at.x - gesture.origin.x), Math.round(at.y - gesture.origin.y)])
    if (!gesture.dirty) {
      gesture.dirty = true
      requestAnimationFrame(() => {
        if (!gesture || gesture.kind !== 'pen') return
        gesture.dirty = false
        items.get(gesture.id)?.set('points', gesture.points.slice())
      })
    }
  }
})

function endGesture (event) {
  if (!gesture) return
  const done = gesture
  gesture = null
  if (done.kind === 'size') {
    const item = items.get(done.id)
    if (item && (item.get('w') < 8 || item.get('h') < 8)) change(() => { item.set('w', 160); item.set('h', 100) })
    selected.clear(); selected.add(done.id); setTool('select')
  } else if (done.kind === 'arrow') {
    const target = event && event.target.closest && event.target.closest('[data-id]')
    const to = target ? target.dataset.id : itemAt(items, done.end)
    if (to && to !== done.from) addItem({ type: 'arrow', from: done.from, to, color: '#1f2937' })
  } else if (done.kind === 'pen') {
    const item = items.get(done.id)
    if (item) change(() => item.set('points', done.points))
  } else if (done.kind === 'write') {
    startEditing(done.id, { fresh: true })
  }
  redraw()
}
svg.addEventListener('pointerup', endGesture)
svg.addEventListener('pointercancel', () => { gesture = null; redraw() })
svg.addEventListener('contextmenu', (event) => event.preventDefault())
svg.addEventListener('dblclick', (event) => {
  const target = event.target.closest('[data-id]')
  if (target) startEditing(target.dataset.id)
})

// ---- editing text ---------------------------------------------------------------------
let editing = null
const editor = $('editor')
function startEditing (id, { fresh = false } = {}) {
  const item = items.get(id)
  if (!item || item.get('type') === 'stroke') return
  // A new note's first text joins the step that created it; a later edit is its own step.
  if (!fresh) newAction()
  editing = id
  const box = bounds(items, id)
  const svgBox = svg.getBoundingClientRect()
  Object.assign(editor.style, {
    display: 'block',
    left: (svgBox.left + view.x + box.x * view.zoom) + 'px',
    top: (svgBox.top + view.y + box.y * view.zoom) + 'px',
    width: Math.max(120, box.w * view.zoom) + 'px',
    height: Math.max(40, box.h * view.zoom) + 'px'
  })
  editor.value = item.get('text') || ''
  editor.focus()
}
function finishEditing () {
  if (!editing) return
  const item = items.get(editing)
  const text = editor.value
  if (item && item.get('text') !== text) change(() => item.set('text', text))
  editing = null
  editor.style.display = 'none'
}
editor.addEventListener('blur', finishEditing)
editor.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' || (event.key === 'Enter' && !event.shiftKey)) { event.preventDefault(); finishEditing() }
})

// ---- keyboard -------------------------------------------------------------------------
const HOTKEYS = { v: 'select', n: 'note', r: 'rect', e: 'ellipse', t: 'text', a: 'arrow', p: 'pen' }
document.addEventListener('keydown', (event) => {
  if (event.target.closest('textarea, input')) return
  const key = event.key.toLowerCase()
  const command = event.ctrlKey || event.metaKey
  if (command && key === 'z') {
    event.preventDefault()
    if (event.shiftKey) undo.redo(); else undo.undo()
  } else if (command && key === 'y') {
    event.preventDefault()
    undo.redo()
  } else if (key === 'delete' || key === 'backspace') {
    event.preventDefault()
    deleteSelected()
  } else if (key === 'escape') {
    selected.clear()
    redraw()
  } else if (!command && HOTKEYS[key]) {
    setTool(HOTKEYS[key])
  }
})
$('undo').addEventListener('click', () => undo.undo())
$('redo').addEventListener('click', () => undo.redo())
$('delete').addEventListener('click', deleteSelected)
$('zoom-in').addEventListener('click', () => zoomAt(svg.clientWidth / 2, svg.clientHeight / 2, 1.25))
$('zoom-out').addEventListener('click', () => zoomAt(svg.clientWidth / 2, svg.clientHeight / 2, 0.8))
const refreshUndo = () => { $('undo').disabled = undo.undoStack.length === 0; $('redo').disabled = undo.redoStack.length === 0 }
undo.on('stack-item-added', refreshUndo)
undo.on('stack-item-popped', refreshUndo)
undo.on('stack-cleared', refreshUndo)

// ---- presence: names and cursors ------------------------------------------------------
let awareness = null
let lastCursor = 0
function setupPresence (shared) {
  awareness = shared
  awareness.setLocalStateField('user', { name: myName, color: myColor })
  awareness.on('change', redraw)
  const nameField = $('name')
  nameField.value = myName
  nameField.addEventListener('keydown', (event) => { if (event.key === 'Enter') nameField.blur() })
  nameField.addEventListener('change', () => {
    myName = nameField.value.trim() || myName
    localStorage.setItem('troupe.name', myName)
    awareness.setLocalStateField('user', { name: myName, color: myColor })
  })
}
function shareCursor (at) {
  const now = performance.now()
  if (!awareness || now - lastCursor < 50) return
  lastCursor = now
  awareness.setLocalStateField('cursor', { x: Math.round(at.x), y: Math.round(at.y) })
}
svg.addEventListener('pointerleave', () => awareness && awareness.setLocalStateField('cursor', null))

function peers () {
  if (!awareness) return []
  const list = []
  awareness.getStates().forEach((state, client) => {
    if (client !== doc.clientID && state.user) list.push({ client, ...state })
  })
  return list
}

// ---- drawing --------------------------------------------------------------------------
let scheduled = false
function redraw () {
  if (scheduled) return
  scheduled = true
  requestAnimationFrame(() => {
    scheduled = false
    const preview = gesture && gesture.kind === 'arrow' ? { from: gesture.from, end: gesture.end } : null
    render(world, items, { selected, preview, peers: peers() })
    const people = peers()
    $('people').replaceChildren(...[{ user: { name: t('you', { name: myName }), color: myColor } }, ...people].map((peer) => {
      const chip = document.createElement('span')
      chip.className = 'person'
      chip.textContent = peer.user.name
      chip.style.borderColor = peer.user.color || '#888'
      return chip
    }))
    $('count').textContent = items.size === 1 ? t('item') : t('items', { count: items.size })
  })
}
items.observeDeep(redraw)
$('room').textContent = room
document.title = room + ' · ' + t('canvas') + ' · Troupe'
setTool('select')
applyView()
refreshUndo()
redraw()
start()
