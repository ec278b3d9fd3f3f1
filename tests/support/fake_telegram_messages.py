"""Bot API methods that change what users see: send, edit, draft, delete, documents, actions.

Each handler validates like Telegram, charges the flood budgets only for valid requests, and
then changes the chat's stored messages.
"""

from __future__ import annotations

from typing import Any

from tests.support.fake_telegram_call import CAPTION_LIMIT, ApiCall, Handler
from tests.support.fake_telegram_entities import normalized
from tests.support.fake_telegram_errors import BotApiError, JsonDict
from tests.support.fake_telegram_state import (
    DraftFrame,
    FileRecord,
    StoredDocument,
    UploadedFile,
    now_unix,
)

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)


def send_message(call: ApiCall) -> JsonDict:
    chat = call.chat()
    text, entities = call.formatted()
    reply = call.reply_target(chat)
    thread_id = call.thread(chat, reply)
    call.charge(chat)
    message = call.bot_message(chat, reply, thread_id, text=text, entities=entities)
    return chat.message_json(message)


def edit_message_text(call: ApiCall) -> JsonDict:
    if call.params.get("inline_message_id"):
        raise BotApiError.bad_request("inline messages are not kept by this server")
    chat = call.chat()
    message = chat.live_message(call.int_param("message_id"))
    if message is None:
        raise BotApiError.message_not_found()
    if not message.from_bot:
        raise BotApiError.bad_request("message can't be edited")
    if message.text is None:
        raise BotApiError.bad_request("there is no text in the message to edit")
    text, entities = call.formatted()
    markup = call.params.get("reply_markup") or None
    if (
        text == message.text
        and entities == normalized(message.entities)
        and markup == message.reply_markup
    ):
        raise BotApiError.not_modified()
    call.charge(chat)
    message.text = text
    message.entities = entities
    # Telegram drops an inline keyboard that an edit does not repeat.
    message.reply_markup = markup
    message.edit_count += 1
    message.edit_date = now_unix()
    message.versions.append(text)
    return chat.message_json(message)


def edit_message_reply_markup(call: ApiCall) -> JsonDict:
    chat = call.chat()
    message = chat.live_message(call.int_param("message_id"))
    if message is None:
        raise BotApiError.message_not_found()
    markup = call.params.get("reply_markup") or None
    if markup == message.reply_markup:
        raise BotApiError.not_modified()
    call.charge(chat)
    message.reply_markup = markup
    message.edit_date = now_unix()
    return chat.message_json(message)


def send_message_draft(call: ApiCall) -> bool:
    chat = call.chat()
    if chat.type != "private":
        raise BotApiError.drafts_unavailable()
    draft_id = call.int_param("draft_id")
    if not draft_id:
        raise BotApiError.bad_request("draft_id must be non-zero")
    text, entities = call.formatted(allow_empty=True)
    thread_id = call.int_param("message_thread_id", required=False)
    call.charge(chat, "draft")
    chat.drafts.append(
        DraftFrame(
            chat.id,
            draft_id,
            text,
            tuple(entities),
            thread_id,
            call.at,
            can_stop=call.flag("can_stop"),
            keep_on_stop=call.flag("keep_on_stop"),
        )
    )
    return True


def send_chat_action(call: ApiCall) -> bool:
    chat = call.chat()
    action = call.params.get("action")
    if action not in CHAT_ACTIONS:
        raise BotApiError.bad_request("wrong parameter action in request")
    chat.actions.append(str(action))
    return True


def delete_message(call: ApiCall) -> bool:
    chat = call.chat()
    message = chat.live_message(call.int_param("message_id"))
    if message is None:
        raise BotApiError.bad_request("message to delete not found")
    if chat.is_group and not message.from_bot and not chat.bot_admin:
        raise BotApiError.bad_request("message can't be deleted")
    message.deleted = True
    return True


def _document_file(call: ApiCall) -> FileRecord:
    document: Any = call.params.get("document")
    if isinstance(document, UploadedFile):
        return call.state.store_file(
            document.data,
            kind="document",
            mime_type=document.content_type or "application/octet-stream",
            file_name=document.file_name,
        )
    if isinstance(document, str) and document in call.state.files:
        return call.state.files[document]
    if isinstance(document, str) and document.startswith(("http://", "https://")):
        name = document.rsplit("/", 1)[-1] or "file"
        return call.state.store_file(
            b"", kind="document", mime_type="application/octet-stream", file_name=name
        )
    raise BotApiError.bad_request("wrong file identifier/HTTP URL specified")


def send_document(call: ApiCall) -> JsonDict:
    chat = call.chat()
    caption, caption_entities = call.formatted(
        "caption", "caption_entities", limit=CAPTION_LIMIT, allow_empty=True
    )
    reply = call.reply_target(chat)
    thread_id = call.thread(chat, reply)
    if call.params.get("document") in (None, ""):
        raise BotApiError.bad_request("there is no document in the request")
    call.charge(chat)
    record = _document_file(call)
    document = {
        "file_id": record.file_id,
        "file_unique_id": record.file_unique_id,
        "file_size": len(record.data),
        "mime_type": record.mime_type,
    }
    if record.file_name:
        document["file_name"] = record.file_name
    message = call.bot_message(
        chat,
        reply,
        thread_id,
        caption=caption or None,
        caption_entities=caption_entities,
        extra={"document": document},
    )
    chat.documents.append(
        StoredDocument(
            chat.id,
            message.message_id,
            record.file_id,
            record.file_name,
            record.mime_type,
            record.data,
            caption or None,
        )
    )
    return chat.message_json(message)


def answer_callback_query(call: ApiCall) -> bool:
    query_id = str(call.params.get("callback_query_id") or "")
    if query_id not in call.state.callback_queries or query_id in call.state.callback_answers:
        raise BotApiError.bad_request(
            "query is too old and response timeout expired or query ID is invalid"
        )
    text = call.params.get("text")
    if isinstance(text, str) and len(text) > 200:
        raise BotApiError.bad_request("MESSAGE_TOO_LONG")
    call.state.callback_answers[query_id] = {
        key: call.params[key]
        for key in ("text", "show_alert", "url", "cache_time")
        if key in call.params
    }
    return True


MESSAGE_METHODS: dict[str, Handler] = {
    "sendMessage": send_message,
    "editMessageText": edit_message_text,
    "editMessageReplyMarkup": edit_message_reply_markup,
    "sendMessageDraft": send_message_draft,
    "sendChatAction": send_chat_action,
    "deleteMessage": delete_message,
    "sendDocument": send_document,
    "answerCallbackQuery": answer_callback_query,
}
