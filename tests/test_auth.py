"""URL signing against the official worked example (spark-protocol.md §2.2)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from bot.spark.auth import (
    format_date,
    parse_authorization,
    redact_url,
    sign_url,
    signature,
)

API_KEY = "addd2272b6d8b7c8abdd79531420ca3b"
API_SECRET = "MjlmNzkzNmZkMDQ2OTc0ZDdmNGE2ZTZi"
DATE = "Fri, 05 May 2023 10:43:39 GMT"
OFFICIAL_URL = (
    "wss://spark-api.xf-yun.com/v1.1/chat?authorization=YXBpX2tleT0iYWRkZDIyNzJiNmQ4YjdjOGFiZ"
    "GQ3OTUzMTQyMGNhM2IiLCBhbGdvcml0aG09ImhtYWMtc2hhMjU2IiwgaGVhZGVycz0iaG9zdCBkYXRlIHJlcXVl"
    "c3QtbGluZSIsIHNpZ25hdHVyZT0iejVnSGR1M3B4VlY0QURNeWs0Njd3T1dEUTlxNkJRelIzbmZNVGpjL0RhUT0"
    "i&date=Fri%2C+05+May+2023+10%3A43%3A39+GMT&host=spark-api.xf-yun.com"
)


def test_official_example_url_is_reproduced_exactly() -> None:
    url = sign_url("wss://spark-api.xf-yun.com/v1.1/chat", API_KEY, API_SECRET, DATE)
    assert url == OFFICIAL_URL


def test_official_example_signature() -> None:
    host, line = "spark-api.xf-yun.com", "GET /v1.1/chat HTTP/1.1"
    assert signature(API_SECRET, host, DATE, line) == (
        "z5gHdu3pxVV4ADMyk467wOWDQ9q6BQzR3nfMTjc/DaQ="
    )


def test_http_variant_signs_post_request_line() -> None:
    host, line = "spark-api.xf-yun.com", "POST /v1.1/chat HTTP/1.1"
    assert signature(API_SECRET, host, DATE, line) == (
        "SFd0y1XlQwsvdK2a0Xyo3wKmfsUovlavQOFPYiWanfw="
    )


def test_datetime_is_formatted_in_english_gmt() -> None:
    assert format_date(datetime.fromtimestamp(1683283419, UTC)) == DATE
    naive = datetime(2023, 5, 5, 10, 43, 39)
    assert format_date(naive) == DATE


def test_port_is_part_of_the_signed_host() -> None:
    url = sign_url("ws://127.0.0.1:8765/v3.5/chat", "k", "s", DATE)
    query = parse_qs(urlsplit(url).query)
    assert query["host"] == ["127.0.0.1:8765"]
    parsed = parse_authorization(query["authorization"][0])
    assert parsed is not None
    assert parsed.signature == signature("s", "127.0.0.1:8765", DATE, "GET /v3.5/chat HTTP/1.1")


def test_sdk_whitespace_variant_parses() -> None:
    sdk_authorization = (
        "YXBpX2tleT0iYWRkZDIyNzJiNmQ4YjdjOGFiZGQ3OTUzMTQyMGNhM2IiLCBhbGdvcml0aG09ImhtYWMtc2hhMj"
        "U2IiwgICAgICAgICBoZWFkZXJzPSJob3N0IGRhdGUgcmVxdWVzdC1saW5lIiwgc2lnbmF0dXJlPSJ6NWdIZHUz"
        "cHhWVjRBRE15azQ2N3dPV0RROXE2QlF6UjNuZk1UamMvRGFRPSI="
    )
    parsed = parse_authorization(sdk_authorization)
    assert parsed is not None
    assert parsed.api_key == API_KEY
    assert parsed.headers == "host date request-line"
    assert parsed.signature == "z5gHdu3pxVV4ADMyk467wOWDQ9q6BQzR3nfMTjc/DaQ="


def test_garbage_authorization_is_rejected() -> None:
    assert parse_authorization("not base64!") is None
    assert parse_authorization("YWJj") is None  # "abc"


def test_redacted_url_drops_the_signed_query() -> None:
    assert redact_url(OFFICIAL_URL) == "wss://spark-api.xf-yun.com/v1.1/chat"
