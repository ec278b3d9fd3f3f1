"""The Telegram front end: updates in, answers streamed out within Telegram's limits.

``app`` builds and runs the bot; ``handlers`` and ``admin`` read updates and call the service;
``streaming``, ``send_scheduler``, ``formatting`` and ``textsplit`` show answers; ``addressing``,
``access`` and ``update_order`` decide which updates are handled, and in what order.
"""
