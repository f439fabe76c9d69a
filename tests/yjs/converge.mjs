// Unmodified Yjs clients (npm yjs + y-websocket) editing one room of a Troupe node at once.
// Usage: node converge.mjs WS_URLS ROOM CLIENTS SEED OPS
// WS_URLS is one URL or several, comma-separated (nodes of a cluster): client i connects to
// URL i modulo their number, and the fresh client to the first.
// With CLIENTS 0 it only reads the room with a fresh client and prints what it holds.
// Each client makes seeded random edits (notes in the `items` map, moves, deletions, text)
// and drops and restores its connection at random. Then every client and a fresh one must
// hold the same document. Prints one JSON line: {"converged", "items", "text", "digest"}.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const [urlList, room, clientCount = '5', seedText = '1', opsText = '200'] = process.argv.slice(2)
const urls = urlList.split(',')
const clients = Number(clientCount)
const ops = Number(opsText)
let seed = Number(seedText) >>> 0
const random = () => {
  // mulberry32: a small seeded generator, so a failing run can be replayed.
  seed = (seed + 0x6d2b79f5) >>> 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const pick = (n) => Math.floor(random() * n)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const connect = (name, url) => {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(url, room, doc, { WebSocketPolyfill: WebSocket, disableBc: true })
  provider.awareness.setLocalStateField('user', { name })
  return { name, doc, provider }
}

const synced = (peer) => new Promise((resolve) => {
  if (peer.provider.synced) return resolve()
  const done = (isSynced) => { if (isSynced) { peer.provider.off('sync', done); resolve() } }
  peer.provider.on('sync', done)
})

const edit = (peer, step) => {
  const items = peer.doc.getMap('items')
  const text = peer.doc.getText('notes')
  const keys = [...items.keys()]
  const choice = pick(10)
  if (choice < 4 || keys.length === 0) {
    const note = new Y.Map()
    note.set('type', 'note')
    note.set('text', `${peer.name} ${step}`)
    note.set('x', pick(1000))
    note.set('y', pick(1000))
    items.set(`${peer.name}-${step}`, note)
  } else if (choice < 7) {
    const item = items.get(keys[pick(keys.length)])
    if (item instanceof Y.Map) { item.set('x', pick(1000)); item.set('y', pick(1000)) }
  } else if (choice < 8) {
    items.delete(keys[pick(keys.length)])
  } else {
    text.insert(pick(text.length + 1), `${peer.name}:${step} `)
  }
}

// Keys sorted: a map's iteration order is the order its entries arrived, which differs
// between peers holding the same document.
const canonical = (value) => {
  if (Array.isArray(value)) return value.map(canonical)
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((key) => [key, canonical(value[key])]))
  }
  return value
}
const snapshot = (doc) => JSON.stringify(canonical({ items: doc.getMap('items').toJSON(), notes: doc.getText('notes').toString() }))

const main = async () => {
  const peers = Array.from({ length: clients }, (_, index) => connect(`c${index}`, urls[index % urls.length]))
  await Promise.all(peers.map(synced))
  for (let step = 0; step < (clients > 0 ? ops : 0); step++) {
    const peer = peers[pick(peers.length)]
    if (pick(25) === 0 && peer.provider.wsconnected) {
      peer.provider.disconnect()
    } else if (!peer.provider.shouldConnect) {
      peer.provider.connect()
    }
    edit(peer, step)
    if (pick(5) === 0) await sleep(pick(5))
  }
  for (const peer of peers) if (!peer.provider.shouldConnect) peer.provider.connect()
  await Promise.all(peers.map(synced))
  const deadline = Date.now() + 20000
  let states = []
  while (Date.now() < deadline) {
    states = peers.map((peer) => snapshot(peer.doc))
    if (states.every((state) => state === states[0])) break
    await sleep(50)
  }
  const converged = states.every((state) => state === states[0])
  if (!converged) for (const peer of peers) console.error(peer.name, peer.provider.wsconnected, peer.doc.getMap('items').size, peer.doc.getText('notes').length)
  const fresh = connect('fresh', urls[0])
  await synced(fresh)
  const freshState = snapshot(fresh.doc)
  const result = {
    converged: clients === 0 || (converged && freshState === states[0]),
    items: fresh.doc.getMap('items').size,
    text: fresh.doc.getText('notes').length,
    digest: freshState
  }
  for (const peer of [...peers, fresh]) peer.provider.destroy()
  console.log(JSON.stringify(result))
  process.exit(result.converged ? 0 : 1)
}

const timeout = setTimeout(() => { console.error('timed out'); process.exit(2) }, 60000)
timeout.unref()
main().catch((error) => { console.error(error); process.exit(3) })
