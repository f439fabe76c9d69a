// Every string the app shows, in English and Simplified Chinese. The language follows the
// browser (navigator.languages); a string missing from a translation is a type error.

const english = {
  appName: "Troupe",
  navigation: "Sections",
  navChat: "Chat",
  navCanvas: "Canvas",
  statusConnecting: "Connecting…",
  statusConnected: "Connected",
  statusOffline: "Offline, reconnecting…",
  statusSignIn: "Access token needed",
  queued: "{count} waiting to send",
  signInTitle: "This assistant needs its access token",
  signInHelp: "It is the server.token of the node's troupe.toml. It stays in this browser.",
  tokenLabel: "Access token",
  signIn: "Sign in",
  messagesLabel: "Conversation",
  composerLabel: "Message",
  composerPlaceholder: "Message your assistant (Enter to send, Shift+Enter for a new line)",
  send: "Send",
  stop: "Stop",
  stopLabel: "Stop generating",
  stoppedNote: "Stopped: the answer ends here.",
  you: "You",
  assistant: "Assistant",
  thinking: "Thinking…",
  copy: "Copy",
  copyAnswer: "Copy the answer",
  attach: "Attach pictures or text files",
  attachRemove: "Remove {name}",
  attachImage: "{name}: only PNG, JPEG, GIF and WebP pictures can be sent.",
  attachTooManyPictures: "At most {count} pictures can go with one message.",
  attachUploadFailed: "{name} could not be uploaded: {reason}",
  attachUploading: "Wait until the pictures are uploaded.",
  attachUploadingOne: "Uploading…",
  picture: "Picture",
  pictureSent: "Picture you sent",
  attachNotText: "{name} is not a text file; only text files can be sent.",
  attachTooLarge: "{name}: too large for one message.",
  copied: "Copied",
  copyFailed: "Copy failed",
  code: "code",
  imageBlocked: "image: {alt}",
  toolRunning: "running…",
  toolDone: "done in {ms} ms",
  toolDoneEarlier: "done",
  toolAwaiting: "waiting for your answer",
  confirmLabel: "Run these tools?",
  allow: "Allow",
  refuse: "Refuse",
  toolFailed: "failed",
  toolArguments: "Arguments",
  toolResult: "Result",
  reminder: "Reminder",
  errorPrefix: "Error",
  emptyChat: "Ask anything. Answers keep their formatting: lists, tables and code.",
  roomsTitle: "Canvas rooms",
  roomsEmpty: "No rooms yet. Open one by name to start drawing together.",
  roomsLoadFailed: "The rooms could not be loaded: {message}",
  roomName: "Room name",
  roomNameHelp: "1–128 letters, digits, dots, dashes or underscores",
  openRoom: "Open",
  roomClients: "{count} connected",
  roomUpdated: "updated {when}",
  roomSize: "{kib} KiB",
  conversations: "Conversations",
  newChat: "New chat",
  searchConversations: "Search conversations",
  noConversations: "No conversations yet.",
  noMatches: "Nothing matches.",
  untitled: "New conversation",
  sharedWith: "Also on {platforms}",
  deleteConversation: "Delete “{title}”",
  renameConversation: "Rename “{title}”",
  editMessage: "Edit your message",
  regenerate: "Regenerate",
  save: "Save",
  titleLabel: "Title",
  deleteConfirm: "Delete “{title}” for good? The assistant forgets it too.",
  conversationsFailed: "The conversations could not be loaded: {message}",
  setupOffer: "Set up a model",
  setupTitle: "Set up a model",
  setupProvider: "Provider",
  setupKey: "API key",
  setupKeyHelp: "Saved in a file only you can read, in Troupe's data directory.",
  setupUrl: "API address (optional)",
  setupModel: "Model",
  setupSave: "Save",
  cancel: "Cancel",
  close: "Close",
  setupWritten: "Saved to {path}. Restart Troupe to talk to the model.",
  setupAddLines: "{path} already exists, so nothing was changed. Add these lines to it and restart Troupe.",
  setupAddLinesAndVariable: "{path} already exists, so nothing was changed. Add these lines to it, set {variable} to your key, and restart Troupe.",
  setupFailed: "The set-up failed: {message}",
  voiceTalk: "Hold to talk",
  voiceHandsFree: "Hands-free",
  voiceHandsFreeHelp: "Listen until switched off: speak, pause, and the assistant answers aloud",
  voiceNeedsSecurePage: "The microphone works on https:// pages and on localhost only.",
  voiceListening: "Listening…",
  voiceSayWakeWord: "Listening for “{word}”…",
  voiceHearing: "Hearing you…",
  voiceThinking: "Thinking…",
  voiceHeardNothing: "Nothing was heard. Hold the button while you speak.",
  voiceOffline: "The microphone needs a connection to the assistant.",
  voiceNoMicrophone: "The microphone could not be opened: allow it for this page.",
  voiceIdle: "",
} as const;

export type Key = keyof typeof english;
type Strings = Record<Key, string>;

const simplifiedChinese: Strings = {
  appName: "Troupe",
  navigation: "栏目",
  navChat: "聊天",
  navCanvas: "画布",
  statusConnecting: "正在连接…",
  statusConnected: "已连接",
  statusOffline: "离线，正在重新连接…",
  statusSignIn: "需要访问令牌",
  queued: "{count} 条等待发送",
  signInTitle: "此助手需要访问令牌",
  signInHelp: "即节点 troupe.toml 中的 server.token，只保存在此浏览器中。",
  tokenLabel: "访问令牌",
  signIn: "登录",
  messagesLabel: "对话",
  composerLabel: "消息",
  composerPlaceholder: "给助手发消息（Enter 发送，Shift+Enter 换行）",
  send: "发送",
  stop: "停止",
  stopLabel: "停止生成",
  stoppedNote: "已停止：回答到此为止。",
  you: "你",
  assistant: "助手",
  thinking: "思考中…",
  copy: "复制",
  copyAnswer: "复制回答",
  attach: "附加图片或文本文件",
  attachRemove: "移除 {name}",
  attachImage: "{name}：只能发送 PNG、JPEG、GIF 和 WebP 图片。",
  attachTooManyPictures: "一条消息最多附带 {count} 张图片。",
  attachUploadFailed: "{name} 上传失败：{reason}",
  attachUploading: "请等待图片上传完成。",
  attachUploadingOne: "上传中…",
  picture: "图片",
  pictureSent: "你发送的图片",
  attachNotText: "{name} 不是文本文件；只能发送文本文件。",
  attachTooLarge: "{name}：超出单条消息的大小上限。",
  copied: "已复制",
  copyFailed: "复制失败",
  code: "代码",
  imageBlocked: "图片：{alt}",
  toolRunning: "运行中…",
  toolDone: "用时 {ms} 毫秒",
  toolDoneEarlier: "已完成",
  toolAwaiting: "等待你的答复",
  confirmLabel: "运行这些工具吗？",
  allow: "允许",
  refuse: "拒绝",
  toolFailed: "失败",
  toolArguments: "参数",
  toolResult: "结果",
  reminder: "提醒",
  errorPrefix: "错误",
  emptyChat: "随便问。回答保留格式：列表、表格和代码。",
  roomsTitle: "画布房间",
  roomsEmpty: "还没有房间。输入名称打开一个，一起画。",
  roomsLoadFailed: "无法加载房间：{message}",
  roomName: "房间名称",
  roomNameHelp: "1–128 个字母、数字、点、短横线或下划线",
  openRoom: "打开",
  roomClients: "{count} 人在线",
  roomUpdated: "更新于 {when}",
  roomSize: "{kib} KiB",
  conversations: "对话",
  newChat: "新对话",
  searchConversations: "搜索对话",
  noConversations: "还没有对话。",
  noMatches: "没有匹配的对话。",
  untitled: "新对话",
  sharedWith: "也在 {platforms} 上",
  deleteConversation: "删除“{title}”",
  renameConversation: "重命名“{title}”",
  editMessage: "编辑你的消息",
  regenerate: "重新生成",
  save: "保存",
  titleLabel: "标题",
  deleteConfirm: "永久删除“{title}”吗？助手也会忘记它。",
  conversationsFailed: "无法加载对话：{message}",
  setupOffer: "设置模型",
  setupTitle: "设置模型",
  setupProvider: "服务商",
  setupKey: "API 密钥",
  setupKeyHelp: "保存在 Troupe 数据目录中只有你能读取的文件里。",
  setupUrl: "API 地址（可选）",
  setupModel: "模型",
  setupSave: "保存",
  cancel: "取消",
  close: "关闭",
  setupWritten: "已保存到 {path}。重启 Troupe 后即可与模型对话。",
  setupAddLines: "{path} 已存在，未作任何更改。请把以下几行加入该文件，然后重启 Troupe。",
  setupAddLinesAndVariable: "{path} 已存在，未作任何更改。请把以下几行加入该文件，将 {variable} 设为你的密钥，然后重启 Troupe。",
  setupFailed: "设置失败：{message}",
  voiceTalk: "按住说话",
  voiceHandsFree: "免提",
  voiceHandsFreeHelp: "持续聆听直到关闭：说话、停顿，助手会出声回答",
  voiceNeedsSecurePage: "麦克风只能在 https:// 页面或 localhost 上使用。",
  voiceListening: "正在聆听…",
  voiceSayWakeWord: "正在等待“{word}”…",
  voiceHearing: "正在听你说…",
  voiceThinking: "正在思考…",
  voiceHeardNothing: "没有听到声音。请按住按钮说话。",
  voiceOffline: "麦克风需要先连接到助手。",
  voiceNoMicrophone: "无法打开麦克风：请允许此页面使用麦克风。",
  voiceIdle: "",
};

export type Language = "en" | "zh-CN";

/** The first of the browser's languages that the app speaks; English otherwise. */
export function pickLanguage(preferred: readonly string[]): Language {
  for (const tag of preferred) {
    const lower = tag.toLowerCase();
    if (lower === "zh" || lower.startsWith("zh-cn") || lower.startsWith("zh-hans") || lower === "zh-sg") {
      return "zh-CN";
    }
    if (lower.startsWith("en")) return "en";
  }
  return "en";
}

export const language: Language = pickLanguage(navigator.languages ?? [navigator.language]);
const strings: Strings = language === "zh-CN" ? simplifiedChinese : english;

/** The string `key` in the page's language, with `{name}` replaced by `values[name]`. */
export function t(key: Key, values: Record<string, string | number> = {}): string {
  return strings[key].replace(/\{(\w+)\}/g, (whole, name: string) =>
    name in values ? String(values[name]) : whole,
  );
}

function isKey(name: string | undefined): name is Key {
  return name !== undefined && name in english;
}

/**
 * Fills the static page: `data-i18n` sets the text, `data-i18n-placeholder`,
 * `data-i18n-label` (aria-label) and `data-i18n-title` set those attributes.
 */
export function localize(root: ParentNode): void {
  document.documentElement.lang = language;
  for (const element of root.querySelectorAll<HTMLElement>("[data-i18n]")) {
    if (isKey(element.dataset.i18n)) element.textContent = t(element.dataset.i18n);
  }
  const attributes: [string, string][] = [
    ["i18nPlaceholder", "placeholder"],
    ["i18nLabel", "aria-label"],
    ["i18nTitle", "title"],
  ];
  for (const [data, attribute] of attributes) {
    const selector = "[data-" + data.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()) + "]";
    for (const element of root.querySelectorAll<HTMLElement>(selector)) {
      const key = element.dataset[data];
      if (isKey(key)) element.setAttribute(attribute, t(key));
    }
  }
}
