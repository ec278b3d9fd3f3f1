"""Spark WebSocket API: model registry, URL signing, wire protocol, client and simulator."""

from bot.spark.auth import sign_url
from bot.spark.models import MODELS, SparkModel, find_model, get_model

__all__ = ["MODELS", "SparkModel", "find_model", "get_model", "sign_url"]
