"""The conversation service, under every front end: questions stored, answers streamed and
stored, limits and lanes. It knows no front end: each one implements :mod:`bot.service.events`.
"""
