"""The credentials every test system runs with."""

from __future__ import annotations

ADMIN_KEY = "test-admin-key-0123456789"
SECRET_KEY = "test-secret-key-0123456789-0123456789"
SERVICE_TOKEN = "test-service-token-0123456789"

SETTINGS = {
    "admin_api_key": ADMIN_KEY,
    "secret_key": SECRET_KEY,
    "service_token": SERVICE_TOKEN,
}
ENV = {f"TIDINGS_{name.upper()}": value for name, value in SETTINGS.items()}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
