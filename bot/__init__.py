"""Spark Telegram bot: iFlytek Spark language models streamed into Telegram."""
