"""Secret settings as the bot uses them: an empty value is no value. An HMAC keyed with
b"" or a token compared with "" verifies whatever anyone sends, so `VAR=` must mean unset."""

from __future__ import annotations

from pydantic import SecretStr


def secret(value: SecretStr | None) -> str | None:
    """The secret's text, or None when it is unset or empty."""
    if value is None:
        return None
    text = value.get_secret_value()
    return text if text else None
