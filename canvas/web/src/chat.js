// The chat panel: the assistant over /ws, one conversation per room, each message carrying
// the room (`canvas_room`) so that its turn sees the board.
import { t } from './strings.js'

function senderId () {
  let id = localStorage.getItem('troupe.sender')
  if (!id) {
    id = 'web-' + crypto.getRandomValues(new Uint32Array(2)).join('')
    localStorage.setItem('troupe.sender', id)
  }
  return id
}

export function connectChat (room, log, form, input) {
  const pending = new Map()
  const toolLines = new Map()
  let socket = null
  let counter = 0
  const send = form.querySelector('button')

  const bubble = (kind, text, before = null) => {
    const element = document.createElement('div')
    element.className = 'msg ' + kind
    element.textContent = text
    log.insertBefore(element, before)
    log.scrollTop = log.scrollHeight
    return element
  }

  const onFrame = (frame) => {
    if (frame.type === 'error' && frame.code === 'unauthorized') {
      const entered = prompt(t('chatToken'))
      if (entered) localStorage.setItem('troupe.token', entered)
      socket.close()
      return
    }
    const target = pending.get(frame.in_reply_to)
    if (frame.type === 'delta' && target) {
      target.textContent += frame.payload
    } else if (frame.type === 'tool_call' && target) {
      toolLines.set(frame.call_id, bubble('tool', '⚙ ' + frame.name.replace(/^canvas__/, '') + ' ' + JSON.stringify(frame.arguments), target))
    } else if (frame.type === 'tool_result') {
      const line = toolLines.get(frame.call_id)
      if (line) line.textContent += frame.ok ? '  ✓' : '  ✗'
      toolLines.delete(frame.call_id)
    } else if (frame.type === 'reply' && target) {
      target.textContent = frame.payload
      pending.delete(frame.in_reply_to)
    } else if (frame.type === 'error') {
      if (target) { target.className = 'msg error'; target.textContent = frame.message; pending.delete(frame.in_reply_to) } else bubble('error', frame.message)
    }
    log.scrollTop = log.scrollHeight
  }

  const connect = () => {
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://'
    socket = new WebSocket(scheme + location.host + '/ws')
    socket.onopen = () => {
      const token = localStorage.getItem('troupe.token') || undefined
      socket.send(JSON.stringify({ type: 'hello', sender_id: senderId(), token }))
      send.disabled = false
    }
    socket.onmessage = (event) => onFrame(JSON.parse(event.data))
    socket.onclose = () => {
      send.disabled = true
      setTimeout(connect, 1500)
    }
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault()
    const text = input.value.trim()
    if (!text || !socket || socket.readyState !== WebSocket.OPEN) return
    const id = 'canvas-' + Date.now() + '-' + (counter++)
    bubble('user', text)
    pending.set(id, bubble('assistant', ''))
    socket.send(JSON.stringify({
      type: 'message', id, content_type: 'text', payload: text,
      conversation_id: 'canvas-' + room, metadata: { canvas_room: room }
    }))
    input.value = ''
  })
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) { event.preventDefault(); form.requestSubmit() }
  })
  connect()
}
