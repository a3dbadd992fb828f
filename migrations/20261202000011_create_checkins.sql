-- Entry at the door. One row per booking, ever: the primary key is the guard that makes check-in
-- exactly once. Of two gates scanning one ticket at the same moment, both may have read "not yet
-- checked in", but only one insert wins; the other finds the winner's row and is told when and
-- at which gate the ticket was used.
create type checkin_source as enum ('online', 'offline');

create table checkins (
    booking_id    uuid not null references bookings (id) on delete cascade,
    showtime_id   uuid not null references showtimes (id) on delete restrict,
    -- when the ticket was scanned: now for an online scan, the scanner's time (never later
    -- than the upload) for an offline one
    checked_in_at timestamptz not null,
    gate          text,
    source        checkin_source not null,
    scanned_by    uuid references users (id) on delete set null,
    recorded_at   timestamptz not null default now(),
    constraint checkins_pkey primary key (booking_id),
    constraint checkins_gate_check check (gate is null or length(gate) between 1 and 64)
);
create index checkins_showtime_idx on checkins (showtime_id);

-- Offline scans arrive in batches (POST /api/v1/checkins/batch), each with the scanner's nonce.
-- A nonce counts once: a batch sent again (a retry after a lost answer) gets the first answer
-- back for every scan it had already sent, and changes nothing.
create table checkin_nonces (
    nonce      text not null,
    scanned_by uuid references users (id) on delete set null,
    -- the answer given the first time; null only inside the transaction that records it
    result     jsonb,
    created_at timestamptz not null default now(),
    constraint checkin_nonces_pkey primary key (nonce),
    constraint checkin_nonces_nonce_check check (length(nonce) between 1 and 128)
);
