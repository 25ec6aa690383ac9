"""The redactor of a connection's secrets: which values are secrets, every form they take, and cuts."""

from __future__ import annotations

import base64
import json
import sys
import unicodedata
from urllib.parse import quote, quote_plus

import pytest
from airflow.sdk.definitions.connection import Connection
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduled_jobs.redaction import Redactor, clean_url, printable, redactor_for

PASSWORD = "pa55/w0rd+&é"
API_KEY = "k3y-0123456789"


def http_connection(**fields: object) -> Connection:
    values: dict[str, object] = {"conn_id": "api", "conn_type": "http", "host": "api.example.com"} | fields
    if isinstance(values.get("extra"), dict):
        values["extra"] = json.dumps(values["extra"])
    return Connection(**values)  # type: ignore[arg-type]


def test_every_form_of_the_password_and_the_basic_header_is_replaced() -> None:
    redact = redactor_for(http_connection(login="svc", password=PASSWORD))
    basic_latin1 = base64.b64encode(f"svc:{PASSWORD}".encode("latin-1")).decode()
    basic_utf8 = base64.b64encode(f"svc:{PASSWORD}".encode()).decode()
    forms = [
        PASSWORD,
        quote(PASSWORD, safe=""),
        quote(PASSWORD, safe="").lower(),  # a server may answer %2f for %2F
        quote_plus(PASSWORD),
        json.dumps(PASSWORD)[1:-1],
        "pa55/w0rd+&amp;é",
        basic_latin1,
        basic_utf8,
    ]
    for form in forms:
        assert redact(f"before {form} after") == "before *** after", form


def test_extra_header_values_are_secrets_but_options_and_public_headers_are_not() -> None:
    extra = {
        "X-Api-Key": API_KEY,
        "X-Tenant": "tenant-42",  # any header may carry a credential
        "Accept": "application/json",
        "timeout": "12345",
        "proxies": {"https": "http://proxyuser:pr0xy-pw@proxy:3128"},
    }
    redact = redactor_for(http_connection(extra=extra), headers_from_extra=True)
    assert redact(f"{API_KEY} tenant-42 pr0xy-pw") == "*** *** ***"
    assert redact("Content-Type application/json, timeout 12345") == "Content-Type application/json, timeout 12345"
    # Without headers (a SQL connection's extra), only secret-looking keys count.
    plain = redactor_for(http_connection(extra={"sslmode": "require", "private_key": "-----BEGIN KEY-----"}))
    assert plain("sslmode require, -----BEGIN KEY-----") == "sslmode require, ***"


def test_credentials_in_the_hosts_url_are_secrets() -> None:
    redact = redactor_for(
        http_connection(host=f"https://svc:{quote(PASSWORD, safe='')}@api.example.com/v1?token=t0k3n-xyz")
    )
    basic = base64.b64encode(f"svc:{PASSWORD}".encode()).decode()
    assert redact(f"{PASSWORD} {basic} t0k3n-xyz") == "*** *** ***"
    token_as_user = redactor_for(http_connection(host="https://ghp_t0k3nAsUser@api.example.com"))
    assert token_as_user("sent ghp_t0k3nAsUser") == "sent ***"


def test_any_urls_userinfo_is_masked_and_short_values_are_left_alone() -> None:
    redact = Redactor(["abc"])
    assert redact("GET http://someone:unknown-pw@host/x failed for abc") == "GET http://***@host/x failed for abc"


def test_clean_url_drops_userinfo_fragment_and_secret_query_values() -> None:
    url = "https://svc:pw@api.example.com:8443/orders?page=2&access_token=abc&api_key=x&Signature=s#frag"
    assert clean_url(url) == "https://api.example.com:8443/orders?page=2&access_token=***&api_key=***&Signature=***"
    assert clean_url("/orders?from=4") == "/orders?from=4"


def test_an_excerpt_cut_from_a_longer_text_keeps_no_start_of_a_secret() -> None:
    secret = "S3CRET-0123456789"
    redact = Redactor([secret])
    # Many secrets shrink the text, so the start of the last one, cut off by the read, falls under the limit.
    text = (secret + " ") * 20 + secret[:9]
    excerpt = redact.excerpt(text, 500, whole=False)
    assert "S3CRET" not in excerpt and excerpt.endswith("... (cut)")
    assert redact.excerpt("short " + secret, 500, whole=True) == "short ***"
    assert redact.excerpt("x" * 600, 500, whole=True) == "x" * 500 + "... (cut)"


def test_printable_puts_remote_text_on_one_line() -> None:
    assert printable("a\r\nfake log line\x1b[31m") == "a fake log line [31m"  # C0 and C1 controls: one space


# -- line and format control characters (issue 22, item 5) ---------------------------------------------------

HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
"""Controls, format characters (bidi overrides, embeds, isolates, zero-width), line and paragraph separators, and
lone surrogates: none may reach a page, a log line or a terminal as itself."""


def _hidden(text: str) -> list[str]:
    return [c for c in text if unicodedata.category(c) in HIDDEN]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
        ("next\x85line", "next line"),
        ("Orders \u202etropxe\u202c", "Orders \\u202etropxe\\u202c"),
        ("\u202a\u202b\u202d", "\\u202a\\u202b\\u202d"),
        ("\u2066\u2067\u2068x\u2069", "\\u2066\\u2067\\u2068x\\u2069"),
        ("zero\u200bwidth\u200c\u200d\u2060\ufeff", "zero\\u200bwidth\\u200c\\u200d\\u2060\\ufeff"),
        ("soft\xadhyphen\u061c\u180e", "soft\\xadhyphen\\u061c\\u180e"),
        ("tag\U000e0041\U000e007f", "tag\\U000e0041\\U000e007f"),
        ("lone \udcff", "lone \\udcff"),
        ("ok: ünïcödé 日本 \U0001f600 a\xa0b", "ok: ünïcödé 日本 \U0001f600 a\xa0b"),
    ],
)
def test_printable_shows_line_and_format_controls_as_visible_escapes(text: str, expected: str) -> None:
    assert printable(text) == expected


def test_printable_leaves_no_hidden_character_of_any_code_point() -> None:
    """Every code point of those categories, in this Python's Unicode, one at a time and all at once."""
    every = "".join(chr(cp) for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) in HIDDEN)
    assert "\u2028" in every and "\u202e" in every and "\U000e0001" in every
    assert _hidden(printable(every)) == []
    for character in every:
        shown = printable(character)
        assert _hidden(shown) == [], hex(ord(character))
        assert shown.isascii() and shown.isprintable(), hex(ord(character))


_ANY_TEXT = st.text(
    st.one_of(
        st.characters(categories=["Cc", "Cf", "Zl", "Zp", "Cs"]),
        st.characters(codec=None),
        st.sampled_from("\u2028\u2029\x85\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\ufeff"),
    ),
    max_size=60,
)


@given(_ANY_TEXT)
@settings(max_examples=400, deadline=None)
def test_printable_property_one_line_no_hidden_characters(text: str) -> None:
    shown = printable(text)
    assert _hidden(shown) == []
    assert printable(shown) == shown  # what it shows is already safe to show
    # Every other character is kept, in order: only the hidden ones change.
    assert [c for c in shown if not c.isascii()] == [c for c in text if not c.isascii() and c not in _hidden(text)]
    if not _hidden(text):
        assert shown == text
