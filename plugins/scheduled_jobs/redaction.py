"""Secrets of a connection kept out of every text we store or log.

Error texts are built from parts we choose (``clean_url``, ``printable``), then passed through the
connection's ``Redactor``. It knows each form a secret takes on its way to a destination and back: as
typed, URL-encoded, JSON- or HTML-escaped, and as the base64 ``login:password`` of a Basic
``Authorization`` header, which Airflow's own log masker does not know. Those forms are registered
with Airflow's masker too (``mask_secret``), so a secret a library logs is hidden in the task log.
"""

from __future__ import annotations

import base64
import html
import json
import re
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit, urlunsplit

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

MASK = "***"
# Shorter values are not replaced inside texts: "1" or "abc" would mangle every message, and no real
# credential is that short. (Airflow's masker skips values under 5 characters.)
MIN_SECRET_LENGTH = 4
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|auth|sig|credential|session|cookie|code", re.IGNORECASE)
_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/?#@\s]*@", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
# Format characters (Unicode category Cf: bidi embeds, overrides and isolates, zero-width characters, the BOM,
# tags), line and paragraph separators (Zl, Zp) and lone surrogates (Cs), as of Unicode 15.1 (Python 3.13), a
# superset of the older tables. Written out rather than computed at import: a scan of every code point costs a
# fifth of a second, in every process. tests/test_redaction.py checks it against this Python's unicodedata.
_HIDDEN = re.compile(
    "[\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    "\ud800-\udfff\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)
# An Authorization value, "<scheme> <credentials>" (RFC 9110 11.4): a destination may echo the credentials alone.
_SCHEME_AND_CREDENTIALS = re.compile(r"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*\s+(\S+)")
# Extra keys HttpHook takes as request options, not as headers (airflow.providers.http.hooks.http).
_HTTP_OPTIONS = frozenset(
    {
        "stream",
        "cert",
        "proxies",
        "proxy",
        "timeout",
        "verify",
        "verify_ssl",
        "allow_redirects",
        "max_redirects",
        "trust_env",
        "check_response",
        "srv_lookup",
    }
)
# Headers that say how to talk, never who is talking: their values are not secrets.
_PUBLIC_HEADERS = frozenset(
    {
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "connection",
        "content-language",
        "content-type",
        "pragma",
        "user-agent",
    }
)


class Connection(Protocol):
    """What the redactor reads of an Airflow connection (the Task SDK's or the metadata database's)."""

    login: str | None
    password: str | None
    host: str | None

    @property
    def extra_dejson(self) -> dict[str, Any]: ...


def looks_secret(name: str) -> bool:
    """Whether a parameter or key of this name holds a secret (``token``, ``api_key``, ``X-Signature``...)."""
    return bool(_SECRET_NAME.search(name))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` on one line, as remote data may be shown on a page, in a log line or on a terminal.

    Control characters (newlines, U+0085, terminal escapes: C0 and C1) become a space, a run of them one space.
    Every format character (bidi overrides, embeds and isolates, zero-width ones), U+2028, U+2029 and a lone
    surrogate becomes a visible escape (``\\u202e``): a space in their place would hide that the text tried
    to reorder or split what a reader sees.
    """
    return _HIDDEN.sub(_escape, _CONTROL.sub(" ", text))


def is_unicode(text: str) -> bool:
    """False for a text holding a lone surrogate: bytes a shell passed that are not UTF-8, or ``"\\udcff"`` in
    JSON. Valid to Python, stored by no database."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(value: object, limit: int) -> str:
    """A value from remote data as a message quotes it: escaped (its repr) and at most ``limit`` characters,
    then how long it was."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _clean_parameter(parameter: str) -> str:
    name, equals, _ = parameter.partition("=")
    return f"{name}={MASK}" if equals and looks_secret(unquote_plus(name)) else parameter


def clean_url(url: str) -> str:
    """``url`` as shown in a message: no userinfo, no fragment, and secret-looking query values masked."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(_clean_parameter(p) for p in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _forms(secret: str) -> Iterator[str]:
    """The ways one secret can appear in a text that went through HTTP, JSON or HTML."""
    for value in {secret, secret.strip()}:
        yield value
        yield quote(value, safe="")
        yield quote(value)
        yield quote_plus(value)
        yield json.dumps(value)[1:-1]
        yield json.dumps(value, ensure_ascii=False)[1:-1]
        yield json.dumps(value)[1:-1].replace("/", "\\/")  # JSON as PHP and others write it: "\/"
        yield html.escape(value)


def _basic_forms(login: str, password: str) -> Iterator[str]:
    """``login:password`` in base64, as a Basic ``Authorization`` header carries it (requests: latin-1)."""
    joined = f"{login}:{password}"
    for encoding in ("latin-1", "utf-8"):
        try:
            yield base64.b64encode(joined.encode(encoding)).decode("ascii")
        except UnicodeEncodeError:
            continue


class Redactor:
    """Replaces every form of a set of secrets, and the userinfo of any URL, with ``***``."""

    def __init__(self, secrets: Iterable[str] = (), logins: Iterable[tuple[str, str]] = ()) -> None:
        found = {form for secret in secrets for form in _forms(secret)}
        # The base64 of a Basic header is a secret like any other: it comes back URL-encoded or escaped too.
        found |= {
            form for login, password in logins for basic in _basic_forms(login, password) for form in _forms(basic)
        }
        # Longest first: a secret holding another one is replaced whole.
        self.forms = tuple(sorted((f for f in found if len(f) >= MIN_SECRET_LENGTH), key=len, reverse=True))
        self.longest = len(self.forms[0]) if self.forms else 0
        # Case-insensitive: a URL-encoded form may come back as %2f or %2F.
        self._pattern = re.compile("|".join(map(re.escape, self.forms)), re.IGNORECASE) if self.forms else None

    def __call__(self, text: str) -> str:
        text = _USERINFO.sub(rf"\g<1>{MASK}@", text)
        return self._pattern.sub(MASK, text) if self._pattern else text

    def excerpt(self, text: str, limit: int, *, whole: bool) -> str:
        """At most ``limit`` characters of ``text``, redacted.

        ``whole`` is False when ``text`` was cut from a longer one: its last characters may then be the
        start of a secret, which no pattern matches, so they are dropped too.
        """
        redacted = self(text)
        if not whole:
            redacted = redacted[: max(0, len(redacted) - max(self.longest - 1, 0))]
        if whole and len(redacted) <= limit:
            return redacted
        return redacted[:limit] + "... (cut)"


def _url_secrets(url: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The secrets a URL carries: its userinfo and the values of its secret-looking query parameters."""
    if "://" not in url:
        return [], []
    parts = urlsplit(url)
    secrets: list[str] = []
    logins: list[tuple[str, str]] = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon:
            secrets += [password, unquote(password)]
            logins.append((unquote(user), unquote(password)))
        else:  # a lone user name in a URL is a token (https://TOKEN@host)
            secrets += [user, unquote(user)]
    for parameter in parts.query.split("&"):
        name, equals, value = parameter.partition("=")
        if equals and looks_secret(unquote_plus(name)):
            secrets += [value, unquote_plus(value)]
    return secrets, logins


def _leaves(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """(key path, text) of every scalar in a JSON document."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _leaves(inner, (*path, str(key)))
    elif isinstance(value, list):
        for inner in value:
            yield from _leaves(inner, path)
    elif value is not None and not isinstance(value, bool):
        yield path, str(value)


def _is_header(path: tuple[str, ...]) -> bool:
    return len(path) == 1 and path[0].lower() not in _HTTP_OPTIONS and path[0].lower() not in _PUBLIC_HEADERS


def redactor_for(connection: Connection, *, headers_from_extra: bool = False) -> Redactor:
    """The redactor of an Airflow connection's secrets, which are also registered with Airflow's log masker.

    Secrets: the password (and ``login:password`` in base64), the userinfo and token parameters of the
    host's URL and of any URL in the extra (proxies), and the extra's values under secret-looking keys.
    ``headers_from_extra``: the connection's extra is sent as request headers (``HttpHook``), so every
    header value counts as a secret (an API key may sit under any name), except the public ones.
    """
    from airflow.sdk.log import mask_secret

    secrets: list[str] = []
    logins: list[tuple[str, str]] = []
    if connection.password:
        secrets.append(connection.password)
        logins.append((connection.login or "", connection.password))
    urls = [connection.host or ""]
    for path, text in _leaves(connection.extra_dejson):
        urls.append(text)
        if any(looks_secret(key) for key in path) or (headers_from_extra and _is_header(path)):
            secrets.append(text)
            credentials = _SCHEME_AND_CREDENTIALS.fullmatch(text.strip())
            if credentials:  # "Bearer <token>": the token alone is a secret too
                secrets.append(credentials.group(1))
    for url in urls:
        found, found_logins = _url_secrets(url)
        secrets += found
        logins += found_logins
    redactor = Redactor([s for s in secrets if s], logins)
    for form in redactor.forms:
        mask_secret(form)
    return redactor
