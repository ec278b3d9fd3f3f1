"""State that several bot processes share through Redis: leases with fencing tokens, ordered
queues of questions per conversation, signals every process hears, quota reservations and rate
windows, and sliding windows of calls with "not before" deadlines (a send budget). Knows
neither the bot nor Telegram; the service reaches it through its own ports."""
