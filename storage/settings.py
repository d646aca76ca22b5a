"""Configuration from the environment, also read from a `.env` file in the working directory.

Secrets (merchant key, tokens, app secret) are kept out of repr() so they never reach a log line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_WHATSAPP_API_URL = "https://graph.facebook.com/v21.0"


class SettingsError(ValueError):
    """A missing or inconsistent setting; the message names it and never shows a secret."""


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///convoflow.db"
    flows_dir: str = "flows"
    omari_api_base_url: str | None = None
    omari_merchant_key: str | None = field(default=None, repr=False)
    omari_channel: str = "WEB"
    whatsapp_access_token: str | None = field(default=None, repr=False)
    whatsapp_phone_number_id: str | None = None
    whatsapp_app_secret: str | None = field(default=None, repr=False)
    whatsapp_verify_token: str | None = field(default=None, repr=False)
    whatsapp_api_url: str = DEFAULT_WHATSAPP_API_URL

    @classmethod
    def from_env(cls, environ: dict | None = None, dotenv: bool = True) -> "Settings":
        """Read settings from os.environ (after loading ./.env, which never overrides the environment)."""
        if environ is None:
            if dotenv:
                from dotenv import load_dotenv

                load_dotenv(os.path.join(os.getcwd(), ".env"), override=False)
            environ = dict(os.environ)
        get = lambda k: (environ.get(k) or "").strip() or None  # noqa: E731
        settings = cls(
            database_url=get("DATABASE_URL") or cls.database_url,
            flows_dir=get("FLOWS_DIR") or cls.flows_dir,
            omari_api_base_url=get("OMARI_API_BASE_URL"),
            omari_merchant_key=get("OMARI_MERCHANT_KEY"),
            omari_channel=(get("OMARI_CHANNEL") or cls.omari_channel).upper(),
            whatsapp_access_token=get("WHATSAPP_ACCESS_TOKEN"),
            whatsapp_phone_number_id=get("WHATSAPP_PHONE_NUMBER_ID"),
            whatsapp_app_secret=get("WHATSAPP_APP_SECRET"),
            whatsapp_verify_token=get("WHATSAPP_VERIFY_TOKEN"),
            whatsapp_api_url=(get("WHATSAPP_API_URL") or cls.whatsapp_api_url).rstrip("/"),
        )
        if settings.omari_channel not in ("WEB", "POS"):
            raise SettingsError(f"OMARI_CHANNEL must be WEB or POS (got '{settings.omari_channel}')")
        return settings
