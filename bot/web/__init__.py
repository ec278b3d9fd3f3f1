"""The HTTP front end: the OpenAI-compatible API over the service (``python -m bot web``)."""
