-- Booking events as the notification worker delivered them (the default notifier stores them
-- here; email/SMS senders plug in beside it). One row per message id: redelivery is a no-op.
create table notifications (
    message_id     uuid primary key,
    kind           text not null,
    user_id        uuid not null,
    reservation_id uuid not null,
    booking_id     uuid,
    payload        jsonb not null,
    created_at     timestamptz not null default now()
);
create index notifications_user_idx on notifications (user_id, created_at desc);

-- The simulated payment gateway's own ledger. A real gateway keeps this on its side; the
-- simulation keeps it here so that every worker process sees the same charges, which makes
-- "charged at most once per payment id" observable in tests. Nothing else reads it.
create table gateway_charges (
    payment_id   uuid primary key,
    status       text not null,
    amount_minor bigint not null,
    currency     char(3) not null,
    reference    text not null,
    -- transient failures served so far (for tokens that fail a given number of times)
    failures     integer not null default 0,
    created_at   timestamptz not null default now(),
    refunded_at  timestamptz,
    constraint gateway_charges_status_check check (status in ('pending', 'charged', 'declined', 'refunded'))
);
