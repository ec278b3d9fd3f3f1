"""An async client for iFlytek Spark's WebSocket API, with its model registry, URL signing,
wire protocol and a local simulator. It imports nothing from the rest of the project::

    from bot.spark import ChatMessage, SparkClient, SparkOptions
"""

from bot.spark.auth import sign_url
from bot.spark.client import SparkClient
from bot.spark.errors import SparkError
from bot.spark.models import MODELS, SparkModel, find_model, get_model
from bot.spark.options import SparkOptions
from bot.spark.retry import RetryPolicy, SparkTimeouts
from bot.spark.types import ChatMessage, Completion, GenerationOptions, StreamEvent

__all__ = [
    "MODELS",
    "ChatMessage",
    "Completion",
    "GenerationOptions",
    "RetryPolicy",
    "SparkClient",
    "SparkError",
    "SparkModel",
    "SparkOptions",
    "SparkTimeouts",
    "StreamEvent",
    "find_model",
    "get_model",
    "sign_url",
]
