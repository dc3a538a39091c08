"""An offline payment-provider stub with the API shape of a card + escrow provider.

It is a separate ASGI app (FastAPI) with its own thread-safe in-memory store; it does
not import capshare's database, models or settings. capshare talks to it over HTTP
through ``app.money.provider.PaymentsClient`` exactly as it would talk to a real provider.

Public surface::

    create_stub_app(*, api_key, webhook_secret, webhook_url=None, ...) -> FastAPI
    run(host="127.0.0.1", port=8090, *, api_key, webhook_secret, ...) -> None
    serve_in_thread(app, host="127.0.0.1", port=0) -> context manager yielding base URL
    sign_payload(payload, secret, timestamp) -> header value for ``Capshare-Signature``

The resources (``/v1/customers``, ``/v1/payment_intents``, ``/v1/refunds``,
``/v1/accounts``, ``/v1/payouts``, ``/v1/balance``, ``/v1/events``,
``/v1/webhook_endpoints``) and the test-only control API (``/_control/...``) are
documented in ``app/payments_stub/api.py``.
"""

from payments_stub.api import StubConfig, create_stub_app
from payments_stub.server import run, serve_in_thread
from payments_stub.webhooks import SIGNATURE_HEADER, sign_payload

__all__ = [
    "SIGNATURE_HEADER",
    "StubConfig",
    "create_stub_app",
    "run",
    "serve_in_thread",
    "sign_payload",
]
