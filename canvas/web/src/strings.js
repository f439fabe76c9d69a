// Every string the canvas page shows, in English and Simplified Chinese, chosen from the
// browser's languages like the app's (src/gateway/web/src/i18n.ts).

const english = {
  canvas: 'Canvas',
  chat: 'Chat',
  sections: 'Sections',
  yourName: 'Your name',
  whoIsHere: 'who is here',
  guest: 'Guest {n}',
  you: '{name} (you)',
  items: '{count} items',
  item: '1 item',
  tools: 'tools',
  colours: 'colours',
  board: 'board',
  editText: 'edit text',
  toolSelect: 'Select, move, resize (V); drag the background to pan',
  toolNote: 'Sticky note (N)',
  toolRect: 'Rectangle (R)',
  toolEllipse: 'Ellipse (E)',
  toolText: 'Text (T)',
  toolArrow: 'Arrow: drag from one item to another (A)',
  toolPen: 'Freehand (P)',
  undo: 'Undo your last edit (Ctrl+Z)',
  redo: 'Redo (Ctrl+Shift+Z)',
  deleteSelection: 'Delete the selection (Delete)',
  zoomOut: 'Zoom out',
  zoomIn: 'Zoom in',
  assistant: 'Assistant',
  assistantHelp: 'It sees this board while you chat: try “turn these notes into a diagram”.',
  askPlaceholder: 'Ask about this board…',
  send: 'Send',
  connecting: 'connecting…',
  connected: 'connected',
  synced: 'synced',
  offline: 'offline — your edits are kept and sync when the connection is back',
  askToken: 'This canvas needs the assistant\'s access token:',
  chatToken: 'The assistant needs its access token:',
  refused: 'the node refused the room ({status})',
  noToken: 'no access token'
}

const chinese = {
  canvas: '画布',
  chat: '聊天',
  sections: '栏目',
  yourName: '你的名字',
  whoIsHere: '谁在这里',
  guest: '访客 {n}',
  you: '{name}（你）',
  items: '{count} 个元素',
  item: '1 个元素',
  tools: '工具',
  colours: '颜色',
  board: '画板',
  editText: '编辑文字',
  toolSelect: '选择、移动、缩放（V）；拖动背景可平移',
  toolNote: '便利贴（N）',
  toolRect: '矩形（R）',
  toolEllipse: '椭圆（E）',
  toolText: '文字（T）',
  toolArrow: '箭头：从一个元素拖到另一个（A）',
  toolPen: '自由画笔（P）',
  undo: '撤销你的上一步（Ctrl+Z）',
  redo: '重做（Ctrl+Shift+Z）',
  deleteSelection: '删除所选（Delete）',
  zoomOut: '缩小',
  zoomIn: '放大',
  assistant: '助手',
  assistantHelp: '聊天时它能看到这块画板：试试“把这些便利贴整理成一张图”。',
  askPlaceholder: '问问关于这块画板的事…',
  send: '发送',
  connecting: '正在连接…',
  connected: '已连接',
  synced: '已同步',
  offline: '离线——你的修改会保留，连接恢复后自动同步',
  askToken: '此画布需要助手的访问令牌：',
  chatToken: '助手需要它的访问令牌：',
  refused: '节点拒绝了这个房间（{status}）',
  noToken: '没有访问令牌'
}

function pick (preferred) {
  for (const tag of preferred) {
    const lower = tag.toLowerCase()
    if (lower === 'zh' || lower.startsWith('zh-cn') || lower.startsWith('zh-hans') || lower === 'zh-sg') return 'zh-CN'
    if (lower.startsWith('en')) return 'en'
  }
  return 'en'
}

export const language = pick(navigator.languages || [navigator.language])
const strings = language === 'zh-CN' ? chinese : english

/** The string `key` in the page's language, with `{name}` replaced by `values[name]`. */
export function t (key, values = {}) {
  return strings[key].replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole))
}

/** Fills `data-i18n` (text), `data-i18n-title`, `data-i18n-label` and `data-i18n-placeholder`. */
export function localize (root) {
  document.documentElement.lang = language
  for (const element of root.querySelectorAll('[data-i18n]')) element.textContent = t(element.dataset.i18n)
  const attributes = [['i18nTitle', 'title'], ['i18nLabel', 'aria-label'], ['i18nPlaceholder', 'placeholder']]
  for (const [data, attribute] of attributes) {
    const selector = '[data-' + data.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase()) + ']'
    for (const element of root.querySelectorAll(selector)) element.setAttribute(attribute, t(element.dataset[data]))
  }
}
