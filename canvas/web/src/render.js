// Draws the board's items (docs/canvas.md's data model) and the others' cursors as SVG.
const NS = 'http://www.w3.org/2000/svg'
const XHTML = 'http://www.w3.org/1999/xhtml'

function element (name, attributes = {}, parent = null) {
  const node = document.createElementNS(NS, name)
  for (const [key, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) node.setAttribute(key, String(value))
  }
  if (parent) parent.appendChild(node)
  return node
}

const number = (value, fallback) => (typeof value === 'number' && Number.isFinite(value) ? value : fallback)

/** An item's box in board units. */
export function bounds (items, id) {
  const item = items.get(id)
  if (!item) return null
  if (item.get('type') === 'stroke') {
    const points = item.get('points') || []
    const xs = points.map((point) => point[0])
    const ys = points.map((point) => point[1])
    const x = number(item.get('x'), 0)
    const y = number(item.get('y'), 0)
    const left = Math.min(0, ...xs)
    const top = Math.min(0, ...ys)
    return { x: x + left, y: y + top, w: Math.max(1, Math.max(0, ...xs) - left), h: Math.max(1, Math.max(0, ...ys) - top) }
  }
  const type = item.get('type')
  const w = number(item.get('w'), type === 'text' ? 200 : 160)
  const h = number(item.get('h'), type === 'text' ? 32 : 100)
  return { x: number(item.get('x'), 0), y: number(item.get('y'), 0), w, h }
}

/** The topmost item (not an arrow) under a point, if any. */
export function itemAt (items, point) {
  let found = null
  let foundZ = -Infinity
  items.forEach((item, id) => {
    if (item.get('type') === 'arrow') return
    const box = bounds(items, id)
    const z = number(item.get('z'), 0)
    if (box && point.x >= box.x && point.x <= box.x + box.w && point.y >= box.y && point.y <= box.y + box.h && z >= foundZ) {
      found = id
      foundZ = z
    }
  })
  return found
}

function label (group, box, text, className) {
  const holder = element('foreignObject', { x: box.x, y: box.y, width: Math.max(1, box.w), height: Math.max(1, box.h) }, group)
  const div = document.createElementNS(XHTML, 'div')
  div.className = className
  div.textContent = text || ''
  holder.appendChild(div)
}

/** Where the line from a box's centre towards `toward` leaves the box. */
function edgePoint (box, toward) {
  const cx = box.x + box.w / 2
  const cy = box.y + box.h / 2
  const dx = toward.x - cx
  const dy = toward.y - cy
  if (dx === 0 && dy === 0) return { x: cx, y: cy }
  const scale = Math.min(Math.abs((box.w / 2) / (dx || 1e-9)), Math.abs((box.h / 2) / (dy || 1e-9)))
  return { x: cx + dx * Math.min(1, scale), y: cy + dy * Math.min(1, scale) }
}

const centre = (box) => ({ x: box.x + box.w / 2, y: box.y + box.h / 2 })

function drawArrow (layer, items, id, item) {
  const from = bounds(items, item.get('from'))
  const to = bounds(items, item.get('to'))
  if (!from || !to) return
  const start = edgePoint(from, centre(to))
  const end = edgePoint(to, centre(from))
  const group = element('g', { 'data-id': id, class: 'item arrow' }, layer)
  element('line', { x1: start.x, y1: start.y, x2: end.x, y2: end.y, class: 'hit' }, group)
  element('line', { x1: start.x, y1: start.y, x2: end.x, y2: end.y, stroke: item.get('color') || '#1f2937', 'marker-end': 'url(#arrowhead)' }, group)
  const text = item.get('text')
  if (text) {
    const middle = { x: (start.x + end.x) / 2, y: (start.y + end.y) / 2 }
    element('text', { x: middle.x, y: middle.y - 6, class: 'arrow-label', 'text-anchor': 'middle' }, group).textContent = text
  }
}

function drawItem (layer, items, id, item, isSelected) {
  const type = item.get('type')
  const box = bounds(items, id)
  const fill = item.get('color') || '#fde68a'
  const group = element('g', { 'data-id': id, 'data-type': type, class: 'item' + (isSelected ? ' selected' : '') }, layer)
  if (type === 'note') {
    element('rect', { x: box.x, y: box.y, width: box.w, height: box.h, rx: 6, fill, class: 'note' }, group)
    label(group, box, item.get('text'), 'note-text')
  } else if (type === 'rect') {
    element('rect', { x: box.x, y: box.y, width: box.w, height: box.h, rx: 4, fill: fill + '55', stroke: fill === '#1f2937' ? fill : '#334155', class: 'shape' }, group)
    label(group, box, item.get('text'), 'shape-text')
  } else if (type === 'ellipse') {
    element('ellipse', { cx: box.x + box.w / 2, cy: box.y + box.h / 2, rx: box.w / 2, ry: box.h / 2, fill: fill + '55', stroke: '#334155', class: 'shape' }, group)
    label(group, box, item.get('text'), 'shape-text')
  } else if (type === 'text') {
    element('rect', { x: box.x, y: box.y, width: box.w, height: box.h, class: 'hit' }, group)
    label(group, box, item.get('text'), 'plain-text')
  } else if (type === 'stroke') {
    const x = number(item.get('x'), 0)
    const y = number(item.get('y'), 0)
    const points = (item.get('points') || []).map((point) => `${x + point[0]},${y + point[1]}`).join(' ')
    element('polyline', { points, class: 'hit' }, group)
    element('polyline', { points, stroke: item.get('color') || '#1f2937', class: 'stroke' }, group)
  } else {
    element('rect', { x: box.x, y: box.y, width: box.w, height: box.h, class: 'shape unknown' }, group)
    label(group, box, item.get('text') || type, 'shape-text')
  }
  if (isSelected) {
    element('rect', { x: box.x - 4, y: box.y - 4, width: box.w + 8, height: box.h + 8, class: 'selection' }, group)
    if (type !== 'stroke') element('rect', { x: box.x + box.w - 5, y: box.y + box.h - 5, width: 10, height: 10, class: 'handle', 'data-handle': id }, group)
  }
}

function drawCursor (layer, peer) {
  if (!peer.cursor) return
  const { x, y } = peer.cursor
  const group = element('g', { class: 'cursor', transform: `translate(${x} ${y})` }, layer)
  element('path', { d: 'M0,0 L0,16 L4.5,12 L8,19 L10.5,18 L7,11 L13,11 Z', fill: peer.user.color || '#555' }, group)
  const name = element('text', { x: 14, y: 26, class: 'cursor-label' }, group)
  name.textContent = peer.user.name
}

/** Replaces the board's drawing with the current items, selection and cursors. */
export function render (world, items, { selected, preview, peers }) {
  const layer = element('g')
  const ordered = []
  items.forEach((item, id) => ordered.push([id, item]))
  ordered.sort((a, b) => number(a[1].get('z'), 0) - number(b[1].get('z'), 0) || (a[0] < b[0] ? -1 : 1))
  for (const [id, item] of ordered) if (item.get('type') === 'arrow') drawArrow(layer, items, id, item)
  for (const [id, item] of ordered) if (item.get('type') !== 'arrow') drawItem(layer, items, id, item, selected.has(id))
  if (preview) {
    const from = bounds(items, preview.from)
    if (from) {
      const start = centre(from)
      element('line', { x1: start.x, y1: start.y, x2: preview.end.x, y2: preview.end.y, class: 'preview', 'marker-end': 'url(#arrowhead)' }, layer)
    }
  }
  for (const peer of peers) drawCursor(layer, peer)
  world.replaceChildren(layer)
}
