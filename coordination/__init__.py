"""State that several bot processes share through Redis: leases with fencing tokens, ordered
queues of questions per conversation, and signals every process hears. Knows neither the bot
nor Telegram; the service reaches it through its own ports."""
