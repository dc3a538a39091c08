"""Translations (a gettext catalogue per locale, read from its .po file at start)
and locale-aware formatting of numbers, money and times."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

LOCALE_DIR = Path(__file__).parent / "locale"
LOCALES = {"zh": "zh_CN", "en": "en"}
DEFAULT = "zh"
HTML_LANG = {"zh": "zh-CN", "en": "en"}


@cache
def _messages(locale: str) -> dict[str, str]:
    """Every catalogue of the locale (messages.po and any other *.po), merged."""
    merged: dict[str, str] = {}
    for path in sorted((LOCALE_DIR / locale / "LC_MESSAGES").glob("*.po")):
        with path.open("rb") as fh:
            catalog = read_po(fh, locale=locale)
        merged.update(
            {
                m.id: m.string
                for m in catalog
                if m.id and isinstance(m.id, str) and m.string and isinstance(m.string, str)
            }
        )
    return merged


@dataclass(frozen=True)
class Translator:
    lang: str  # "zh" or "en"
    tz: ZoneInfo

    @property
    def locale(self) -> str:
        return LOCALES[self.lang]

    @property
    def html_lang(self) -> str:
        return HTML_LANG[self.lang]

    def gettext(self, message: str, **params: object) -> str:
        text = _messages(self.locale).get(message, message)
        return text.format(**params) if params else text

    def reason(self, code: str) -> str:
        """Why a match run left a step out (a ``matching.Reason`` value): its own entry
        ``unmatched_<code>`` where a plain word would read wrong (e.g. "declined", also a
        booking state), else the code's entry."""
        messages = _messages(self.locale)
        key = f"unmatched_{code}"
        return messages[key] if key in messages else self.gettext(code)

    def money(self, fen: int | None) -> str:
        if fen is None:
            return "—"
        # "¥" in both languages (Babel's English symbol for CNY is "CN¥")
        sign = "-" if fen < 0 else ""
        return f"{sign}¥{format_decimal(abs(fen) / 100, format='#,##0.00', locale=self.locale)}"

    def number(self, value: float, digits: int = 0) -> str:
        return format_decimal(round(value, digits), locale=self.locale)

    def datetime(self, value: dt.datetime | None) -> str:
        if value is None:
            return "—"
        return format_datetime(value, "yyyy-MM-dd HH:mm", tzinfo=self.tz, locale=self.locale)

    def local_input(self, value: dt.datetime | None) -> str:
        """A value for <input type="datetime-local">, in the display time zone."""
        return value.astimezone(self.tz).strftime("%Y-%m-%dT%H:%M") if value else ""
