-- From a hold to a booking. Every status is an explicit enum and every change of it is a guarded
-- `update ... where status = <expected>`, so two workers can never both move one row.

create type reservation_status as enum ('payment_pending', 'confirmed', 'failed', 'expired', 'cancelled');

-- A checkout of one hold. The hold lives in Redis; its id is kept here so a worker can prove
-- (fencing) that the seats it is about to sell are still held by this very hold.
create table reservations (
    id             uuid primary key,
    user_id        uuid not null references users (id) on delete restrict,
    showtime_id    uuid not null references showtimes (id) on delete restrict,
    hold_id        uuid not null,
    status         reservation_status not null default 'payment_pending',
    amount_minor   bigint not null,
    currency       char(3) not null,
    -- after this instant an unpaid reservation is expired by the sweeper
    deadline       timestamptz not null,
    failure_reason text,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    -- one checkout per hold, whatever the client retries
    constraint reservations_hold_id_key unique (hold_id),
    constraint reservations_amount_check check (amount_minor >= 0)
);
create index reservations_user_idx on reservations (user_id, created_at desc);
create index reservations_pending_deadline_idx on reservations (deadline) where status = 'payment_pending';

create table reservation_seats (
    reservation_id uuid not null references reservations (id) on delete cascade,
    seat_id        uuid not null references seats (id) on delete restrict,
    category       text not null,
    price_minor    bigint not null,
    primary key (reservation_id, seat_id),
    constraint reservation_seats_price_check check (price_minor >= 0)
);

create type payment_status as enum ('initiated', 'succeeded', 'failed', 'refunded');

create table payments (
    id              uuid primary key,
    reservation_id  uuid not null references reservations (id) on delete restrict,
    -- 1 for the first attempt at paying a reservation; a new attempt is a new row
    attempt         integer not null default 1,
    status          payment_status not null default 'initiated',
    amount_minor    bigint not null,
    currency        char(3) not null,
    -- opaque token from the client's payment form; never logged
    payment_token   text not null,
    -- the client's Idempotency-Key of the checkout that created this payment
    idempotency_key text not null,
    -- the gateway's reference for the charge, set once it succeeded
    gateway_ref     text,
    failure_reason  text,
    -- how many times a worker picked this payment up
    deliveries      integer not null default 0,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint payments_reservation_attempt_key unique (reservation_id, attempt),
    constraint payments_amount_check check (amount_minor >= 0)
);
create index payments_initiated_idx on payments (updated_at) where status = 'initiated';

create type booking_status as enum ('confirmed', 'cancelled');

create table bookings (
    id             uuid primary key,
    reservation_id uuid not null references reservations (id) on delete restrict,
    user_id        uuid not null references users (id) on delete restrict,
    showtime_id    uuid not null references showtimes (id) on delete restrict,
    status         booking_status not null default 'confirmed',
    -- what is printed on the ticket and scanned at the door
    ticket_code    text not null,
    amount_minor   bigint not null,
    currency       char(3) not null,
    created_at     timestamptz not null default now(),
    cancelled_at   timestamptz,
    constraint bookings_reservation_id_key unique (reservation_id),
    constraint bookings_ticket_code_key unique (ticket_code)
);
create index bookings_user_idx on bookings (user_id, created_at desc);
create index bookings_showtime_idx on bookings (showtime_id);

-- THE guard against double booking: one row per sold seat of a showtime. Redis is the fast
-- path; if it lost every key, this primary key still refuses the second sale.
create table booked_seats (
    showtime_id uuid not null references showtimes (id) on delete restrict,
    seat_id     uuid not null references seats (id) on delete restrict,
    booking_id  uuid not null references bookings (id) on delete cascade,
    constraint booked_seats_pkey primary key (showtime_id, seat_id)
);
create index booked_seats_booking_idx on booked_seats (booking_id);

create table reviews (
    id         uuid primary key,
    movie_id   uuid not null references movies (id) on delete cascade,
    user_id    uuid not null references users (id) on delete cascade,
    rating     smallint not null,
    comment    text not null default '',
    created_at timestamptz not null default now(),
    constraint reviews_movie_user_key unique (movie_id, user_id),
    constraint reviews_rating_check check (rating between 1 and 5),
    constraint reviews_comment_check check (length(comment) <= 4000)
);
create index reviews_movie_idx on reviews (movie_id, created_at desc);

-- Saved answers of requests made with an Idempotency-Key, per user.
create table idempotency_keys (
    user_id         uuid not null references users (id) on delete cascade,
    key             text not null,
    -- sha-256 of the request (method, path, body): the same key with another request is refused
    request_hash    text not null,
    response_status smallint,
    response_body   jsonb,
    created_at      timestamptz not null default now(),
    primary key (user_id, key),
    constraint idempotency_keys_key_check check (length(key) between 1 and 200)
);
create index idempotency_keys_created_idx on idempotency_keys (created_at);
