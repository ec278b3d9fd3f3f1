// The page's words in English and Chinese; the browser's language picks one, the button switches.
"use strict";
window.I18N = {
  en: {
    title: "Spark chat", menu: "Conversations", signIn: "Sign in", signOut: "Sign out",
    signInTitle: "Sign in",
    signInHelp: "Paste an API key made with python -m bot keys create NAME. It stays in this browser.",
    badKey: "This key was not accepted.", newConversation: "New conversation", more: "More…",
    empty: "Ask anything. Answers stream as Spark writes them.", placeholder: "Ask Spark…",
    send: "Send", stop: "Stop", copy: "Copy", copied: "Copied", reasoning: "Reasoning",
    sources: "Sources", untitled: "New conversation", del: "Delete", reset: "Start over",
    confirmDelete: "Delete this conversation?", model: "Model",
    status_cancelled: "Stopped.", status_partial: "Cut short.", status_failed: "No answer.",
    status_undelivered: "Not delivered in full.", waiting: "Waiting for the previous answer…",
    reconnecting: "Connection lost, resuming…", error: "Something went wrong:",
    lang: "中文",
  },
  zh: {
    title: "星火对话", menu: "对话列表", signIn: "登录", signOut: "退出",
    signInTitle: "登录",
    signInHelp: "粘贴用 python -m bot keys create NAME 生成的 API 密钥。密钥只保存在本浏览器中。",
    badKey: "密钥无效。", newConversation: "新对话", more: "更多…",
    empty: "随便问。回答会随星火的生成实时显示。", placeholder: "向星火提问…",
    send: "发送", stop: "停止", copy: "复制", copied: "已复制", reasoning: "思考过程",
    sources: "参考来源", untitled: "新对话", del: "删除", reset: "重新开始",
    confirmDelete: "删除这个对话？", model: "模型",
    status_cancelled: "已停止。", status_partial: "回答被中断。", status_failed: "没有回答。",
    status_undelivered: "未完整送达。", waiting: "正在等待上一个回答…",
    reconnecting: "连接中断，正在恢复…", error: "出错了：",
    lang: "English",
  },
};
