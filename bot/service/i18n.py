"""Everything the bot says to users, in English and Chinese.

The language comes from Telegram's ``language_code``: any ``zh*`` gets Chinese, everything else
English. Keys are checked by the tests: both languages define exactly the same keys and
placeholders.
"""

from __future__ import annotations

from typing import Literal

Language = Literal["en", "zh"]

COMMANDS: dict[Language, list[tuple[str, str]]] = {
    "en": [
        ("new", "Start a new conversation"),
        ("retry", "Regenerate the last answer"),
        ("stop", "Stop the answer being written"),
        ("model", "Choose the Spark model"),
        ("system", "Show, set or clear the system prompt"),
        ("usage", "Your token usage and quota"),
        ("ask", "Ask a question (in groups)"),
        ("help", "How to use this bot"),
    ],
    "zh": [
        ("new", "开始新对话"),
        ("retry", "重新生成上一个回答"),
        ("stop", "停止正在生成的回答"),
        ("model", "选择星火模型"),
        ("system", "查看、设置或清除系统提示"),
        ("usage", "我的 token 用量和配额"),
        ("ask", "提问（群组中使用）"),
        ("help", "使用帮助"),
    ],
}

# Added to the menu of each admin's private chat only.
ADMIN_COMMANDS: dict[Language, list[tuple[str, str]]] = {
    "en": [
        ("stats", "Usage statistics (admins)"),
        ("quota", "Set a user's daily token quota (admins)"),
    ],
    "zh": [
        ("stats", "用量统计（管理员）"),
        ("quota", "设置用户每日 token 配额（管理员）"),
    ],
}

MESSAGES: dict[Language, dict[str, str]] = {
    "en": {
        "start": (
            "Hello! I answer with iFlytek Spark ({model}).\n"
            "Just write your question. Send /help for commands."
        ),
        "help": (
            "Write a question and I answer, streaming as Spark writes.\n\n"
            "/new: start a new conversation (I forget the previous one)\n"
            "/retry: write the last answer again\n"
            "/stop: stop the answer being written (the text so far stays)\n"
            "/model: choose the model for this chat\n"
            "/system: show, set (/system <text>) or clear (/system clear) the system prompt\n"
            "/usage: your tokens today and this month\n\n"
            "In groups I answer when you mention me, reply to my message, or use "
            "/ask <question>. With Telegram's privacy mode on I can't see mentions: make me "
            "an admin, or turn privacy off with @BotFather (/setprivacy) and add me again."
        ),
        "queued": "⏳ Queued: I'll answer this after the current answer ({position} ahead).",
        "internal_error": (
            "⚠️ Something went wrong on my side and this message was not answered. "
            "Please try again in a moment."
        ),
        "temporarily_unavailable": (
            "⚠️ I can't take questions for a moment (my shared state is unreachable). "
            "Please send this again in a minute."
        ),
        "dropped_at_shutdown": (
            "⏹ The bot is restarting and did not get to this question. "
            "Please send it again in a minute."
        ),
        "text_only": "I can only read text. Please send your question as text or a caption.",
        "not_allowed": "Sorry, this bot is private and not available to you.",
        "admin_only": "This command is for the bot's administrators.",
        "new_conversation": "🆕 New conversation. I've set the earlier messages aside.",
        "nothing_to_stop": "Nothing is being written right now.",
        "stopping": "⏹ Stopping…",
        "nothing_to_retry": "There is no earlier question to answer again.",
        "ask_usage": "Write your question after the command, e.g. /ask What is a black hole?",
        "model_current": (
            "Model for this chat: {model}.\nAvailable: {choices}\nChange: /model <name>"
        ),
        "model_set": "✅ This chat now uses {model}.",
        "model_unknown": (
            "Unknown or unavailable model “{name}”. Available: {choices}\nUsage: /model <name>"
        ),
        "model_system_too_long": (
            "⚠️ This chat's system prompt (about {tokens} tokens) is too long for {model}, which "
            "allows {limit} for it, so the chat keeps its model. Shorten the prompt "
            "(/system <text>) or clear it (/system clear), then switch again."
        ),
        "system_current": "System prompt for this chat:\n{prompt}",
        "system_current_long": (
            "System prompt for this chat ({length} characters, the beginning shown):\n{prompt}\n…"
        ),
        "system_too_long": (
            "⚠️ This system prompt is too long for {model}: about {tokens} tokens, and a system "
            "prompt may take at most {limit} (about {words} English words or {chars} Chinese "
            "characters), half of what the model reads. Nothing was changed: please shorten it."
        ),
        "system_none": "No system prompt is set. Set one with /system <text>.",
        "system_set": "✅ System prompt set.",
        "system_cleared": "✅ System prompt cleared.",
        "system_unsupported": "{model} does not support a system prompt.",
        "footer_stopped": "⏹ Stopped.",
        "empty_answer": "(empty answer: Spark returned no text. Try /retry or rephrase.)",
        "footer_interrupted": "⏹ Interrupted: the bot was restarting. Send /retry to continue.",
        "footer_error": "⚠️ {error}",
        "error_question_too_long": (
            "Your message is too long for {model}: about {tokens} tokens, and the limit is "
            "{budget}. Please shorten it or split it up."
        ),
        "error_question_too_long_system": (
            "Your message is too long for {model}: about {tokens} tokens with this chat's system "
            "prompt, and the limit is {budget}. Your system prompt takes {system} of {budget} "
            "tokens: shorten your message, or the system prompt (/system)."
        ),
        "error_context_too_long": (
            "The conversation got too long for {model}. Send /new to start over."
        ),
        "error_content_blocked": (
            "Spark declined to answer this (content policy). Please rephrase your question."
        ),
        "error_output_blocked": "Spark stopped this answer (content policy).",
        "error_quota": (
            "The Spark token quota for this model is used up. The operator has been told; "
            "please try again later."
        ),
        "error_busy": "Spark is busy right now. Please try again in a minute.",
        "error_timeout": "Spark took too long to answer. Please try again.",
        "error_unavailable": "Spark can't be reached right now. Please try again later.",
        "error_config": "The bot is misconfigured. The operator has been told.",
        "error_internal": "Something went wrong on our side. Please try again.",
        "user_quota_exhausted": (
            "You've used your daily quota of {quota} tokens. It resets at {reset} UTC."
        ),
        "user_rate_limited": "You're asking very fast. Please try again in {seconds} s.",
        # /stats, /quota and /usage. Lines inside reports stay within 32 columns (tested).
        "stats_title_all": "📊 Usage, whole bot",
        "stats_title_user": "👤 Usage of {name}",
        "stats_title_chat": "💬 Usage of {name}",
        "stats_as_of": "{time} UTC",
        "stats_today": "today",
        "stats_days": "{days} d",
        "stats_requests": "requests",
        "stats_failed": "failed",
        "stats_users": "users",
        "stats_chats": "chats",
        "stats_prompt": "prompt",
        "stats_completion": "answer",
        "stats_total": "tokens",
        "stats_first_p50": "1st p50",
        "stats_first_p95": "1st p95",
        "stats_time_p50": "time p50",
        "stats_time_p95": "time p95",
        "stats_errors": "Failed, by Spark code",
        "stats_no_code": "no code",
        "stats_undelivered": "undelivered",
        "stats_daily": "Tokens per day",
        "stats_daily_axis": "{days} d ago",
        "stats_top_users": "Top users, {days} d",
        "stats_top_chats": "Top chats, {days} d",
        "stats_empty": "No requests in the last {days} days.",
        "stats_help": (
            "/stats: the whole bot\n"
            "/stats user <id|@name>\n"
            "/stats chat <id>\n"
            "/stats export: the ledger as CSV\n"
            "/quota <id|@name> <tokens|off|default>"
        ),
        "stats_private_only": "Statistics are shown only in a private chat with me.",
        "stats_unknown_user": "I don't know the user {ref}: they have not written to me yet.",
        "stats_unknown_chat": "I have no record of the chat {ref}.",
        "stats_export_caption": "Usage ledger {since} to {until} UTC, {rows} rows",
        "stats_export_empty": "The ledger has no rows for the last {days} days.",
        "quota_line": "quota",
        "quota_used": "used today",
        "quota_reserved": "in flight",
        "quota_left": "left today",
        "quota_resets": "resets",
        "quota_unlimited": "unlimited",
        "quota_per_day": "{tokens}/day",
        "quota_source_default": "(default)",
        "quota_source_user": "(set)",
        "quota_source_admin": "(admin)",
        "quota_usage": (
            "Usage: /quota <id|@name> <tokens per day|off|default>\n"
            "Tokens per day: 1 to 2,147,483,647 (50k and 50,000 work)."
        ),
        "quota_set": "✅ {name}: daily quota {tokens} tokens.",
        "quota_off": "✅ {name}: no daily quota.",
        "quota_default": "✅ {name}: back to the default quota ({quota}).",
        "usage_title": "Your token usage",
        "usage_today": "today",
        "usage_month": "this month",
    },
    "zh": {
        "start": (
            "你好！我使用讯飞星火（{model}）回答问题。\n直接发送问题即可，发送 /help 查看命令。"
        ),
        "help": (
            "发送问题，我会一边生成一边显示回答。\n\n"
            "/new：开始新对话（忘记之前的内容）\n"
            "/retry：重新生成上一个回答\n"
            "/stop：停止正在生成的回答（已生成的内容会保留）\n"
            "/model：为本聊天选择模型\n"
            "/system：查看、设置（/system <内容>）或清除（/system clear）系统提示\n"
            "/usage：我今天和本月的 token 用量\n\n"
            "在群组中，提到我、回复我的消息或使用 /ask <问题> 时我才会回答。"
            "Telegram 的隐私模式开启时我看不到提及：请把我设为管理员，"
            "或在 @BotFather 中用 /setprivacy 关闭隐私模式后重新把我加入群组。"
        ),
        "queued": "⏳ 已排队：当前回答结束后再回答这条（前面还有 {position} 条）。",
        "internal_error": "⚠️ 我这边出了点问题，没能回答这条消息。请稍后再试。",
        "temporarily_unavailable": "⚠️ 暂时无法接收问题（共享状态无法访问）。请过一分钟再发送。",
        "dropped_at_shutdown": "⏹ 机器人正在重启，没来得及回答这个问题。请稍后重新发送。",
        "text_only": "我只能读文字。请以文字或图片说明的形式发送问题。",
        "not_allowed": "抱歉，这是私人机器人，你无法使用。",
        "admin_only": "此命令仅限机器人管理员使用。",
        "new_conversation": "🆕 已开始新对话，之前的消息不再作为上下文。",
        "nothing_to_stop": "当前没有正在生成的回答。",
        "stopping": "⏹ 正在停止…",
        "nothing_to_retry": "没有可以重新回答的问题。",
        "ask_usage": "请在命令后写上问题，例如：/ask 黑洞是什么？",
        "model_current": "本聊天使用的模型：{model}。\n可选：{choices}\n切换：/model <名称>",
        "model_set": "✅ 本聊天已切换到 {model}。",
        "model_unknown": "未知或未启用的模型“{name}”。可选：{choices}\n用法：/model <名称>",
        "model_system_too_long": (
            "⚠️ 本聊天的系统提示（约 {tokens} 个 token）对 {model} 来说太长了，该模型最多允许 "
            "{limit} 个，因此模型未切换。请先缩短（/system <内容>）或清除（/system clear）"
            "系统提示，再切换。"
        ),
        "system_current": "本聊天的系统提示：\n{prompt}",
        "system_current_long": "本聊天的系统提示（共 {length} 个字符，仅显示开头）：\n{prompt}\n…",
        "system_too_long": (
            "⚠️ 这个系统提示对 {model} 来说太长了：约 {tokens} 个 token，而系统提示最多 {limit} 个"
            "（约 {words} 个英文单词或 {chars} 个汉字），即模型可读内容的一半。"
            "未作更改，请缩短后再试。"
        ),
        "system_none": "尚未设置系统提示。使用 /system <内容> 设置。",
        "system_set": "✅ 系统提示已设置。",
        "system_cleared": "✅ 系统提示已清除。",
        "system_unsupported": "{model} 不支持系统提示。",
        "footer_stopped": "⏹ 已停止。",
        "empty_answer": "（空回答：星火没有返回文字。可以 /retry 或换个说法。）",
        "footer_interrupted": "⏹ 已中断：机器人正在重启。发送 /retry 继续。",
        "footer_error": "⚠️ {error}",
        "error_question_too_long": (
            "你的消息对 {model} 来说太长了：约 {tokens} 个 token，上限为 {budget}。"
            "请缩短或分段发送。"
        ),
        "error_question_too_long_system": (
            "你的消息对 {model} 来说太长了：加上本聊天的系统提示约 {tokens} 个 token，上限为 "
            "{budget}。其中系统提示占 {system}/{budget} 个 token："
            "请缩短消息或系统提示（/system）。"
        ),
        "error_context_too_long": "对话内容超出了 {model} 的上限。发送 /new 开始新对话。",
        "error_content_blocked": "星火拒绝回答此问题（内容审核）。请换个说法。",
        "error_output_blocked": "星火中止了这个回答（内容审核）。",
        "error_quota": "该模型的星火 token 额度已用完，已通知管理员，请稍后再试。",
        "error_busy": "星火当前繁忙，请稍后再试。",
        "error_timeout": "星火响应超时，请重试。",
        "error_unavailable": "暂时无法连接星火，请稍后再试。",
        "error_config": "机器人配置有误，已通知管理员。",
        "error_internal": "我们这边出了点问题，请重试。",
        "user_quota_exhausted": "你今天的 {quota} token 配额已用完，将于 UTC {reset} 重置。",
        "user_rate_limited": "提问太频繁了，请 {seconds} 秒后再试。",
        "stats_title_all": "📊 全部用量",
        "stats_title_user": "👤 {name} 的用量",
        "stats_title_chat": "💬 {name} 的用量",
        "stats_as_of": "{time} UTC",
        "stats_today": "今天",
        "stats_days": "{days}天",
        "stats_requests": "请求",
        "stats_failed": "失败",
        "stats_users": "用户",
        "stats_chats": "聊天",
        "stats_prompt": "提示",
        "stats_completion": "回答",
        "stats_total": "总计",
        "stats_first_p50": "首字p50",
        "stats_first_p95": "首字p95",
        "stats_time_p50": "耗时p50",
        "stats_time_p95": "耗时p95",
        "stats_errors": "失败（按星火错误码）",
        "stats_no_code": "无错误码",
        "stats_undelivered": "未送达",
        "stats_daily": "每日 token",
        "stats_daily_axis": "{days}天前",
        "stats_top_users": "用户排行（{days}天）",
        "stats_top_chats": "聊天排行（{days}天）",
        "stats_empty": "最近 {days} 天没有请求。",
        "stats_help": (
            "/stats：全部用量\n"
            "/stats user <id|@用户名>\n"
            "/stats chat <id>\n"
            "/stats export：导出 CSV 账本\n"
            "/quota <id|@用户名> <token数|off|default>"
        ),
        "stats_private_only": "统计数据只在与我的私聊中显示。",
        "stats_unknown_user": "我不认识用户 {ref}：对方还没有给我发过消息。",
        "stats_unknown_chat": "没有聊天 {ref} 的记录。",
        "stats_export_caption": "用量账本 {since} 至 {until} UTC，共 {rows} 行",
        "stats_export_empty": "最近 {days} 天的账本没有记录。",
        "quota_line": "配额",
        "quota_used": "今日已用",
        "quota_reserved": "进行中",
        "quota_left": "今日剩余",
        "quota_resets": "重置",
        "quota_unlimited": "不限",
        "quota_per_day": "{tokens}/天",
        "quota_source_default": "（默认）",
        "quota_source_user": "（单独）",
        "quota_source_admin": "（管理员）",
        "quota_usage": (
            "用法：/quota <id|@用户名> <每日token数|off|default>\n"
            "每日 token 数：1 至 2,147,483,647（可写 50k 或 50,000）。"
        ),
        "quota_set": "✅ {name}：每日配额 {tokens} token。",
        "quota_off": "✅ {name}：不限每日配额。",
        "quota_default": "✅ {name}：恢复默认配额（{quota}）。",
        "usage_title": "我的 token 用量",
        "usage_today": "今天",
        "usage_month": "本月",
    },
}


def language_of(language_code: str | None) -> Language:
    return "zh" if language_code and language_code.lower().startswith("zh") else "en"


def text(language: Language, key: str, **values: object) -> str:
    """The message ``key`` in ``language``, with ``values`` filled in."""
    template = MESSAGES[language].get(key) or MESSAGES["en"][key]
    return template.format(**values) if values else template
