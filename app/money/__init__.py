"""Money: payments bound to the booking lifecycle, the ledger, the webhook inbox and
the reconciler. One module per concern:

    provider.py   the provider's HTTP client (httpx), built from settings
    planning.py   Payment rows planned by a booking transition, in its transaction
    driver.py     pending payments sent to the provider, each result recorded
    ledger.py     double-entry accounts and transactions
    webhooks.py   the signed-event inbox
    reconcile.py  comparison with the provider after a crash or an outage
    queries.py    what the UI reads (payment status, earnings, statements)

Delivery and disputes are booking commands: :mod:`app.bookings.delivery`.

Service booking (an order's operation, the owner's staff run it)::

    owner accepts ──▶ authorize (hold the price)
    buyer accepts delivery, or the claim window passes ──▶ capture ──▶ payout
        fee (platform_fee_bps) → platform_revenue, the rest → owner_payable → paid out
    buyer disputes within the window ──▶ money stays held until an admin resolves:
        refund all (void), refund part (capture the rest), or release (capture all)
    cancelled ≥ free_cancel_hours before start ──▶ void; later ──▶ capture the
        late_cancel_fee_bps share of the price for the owner, the rest released

Lease (the renter's staff run the machine)::

    created ──▶ deposit (lease_deposit_bps of the price, charged into escrow)
    completed ──▶ charge the booked hours ──▶ payout; refund the deposit
    cancelled ──▶ refund the deposit (minus the late fee, which goes to the owner)

Crash safety: a state change that makes money due writes ``Payment`` rows with their
idempotency keys in the same commit (``plan_*``). ``drive_payments`` then calls the
provider outside any write transaction and records the result and its ledger transaction
in one commit. A crash between the call and that commit leaves the row ``pending``; the
next drive, a webhook, or ``reconcile_payments`` finishes it with the same key.
"""
