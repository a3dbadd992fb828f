-- The catalog: what is shown, where, and when. Admins write it; everyone reads it.

-- The exclusion constraint on showtimes compares a uuid with `=` inside a GiST index.
create extension if not exists btree_gist;

create table movies (
    id               uuid primary key,
    title            text not null,
    description      text not null default '',
    genres           text[] not null default '{}',
    duration_minutes integer not null,
    -- age rating as printed on the poster ("PG-13", "FSK 12"); free text, optional
    age_rating       text,
    release_date     date,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    constraint movies_title_check check (length(title) between 1 and 200),
    constraint movies_duration_check check (duration_minutes between 1 and 1000)
);
create index movies_title_idx on movies (lower(title));
create index movies_genres_idx on movies using gin (genres);

create table theaters (
    id         uuid primary key,
    name       text not null,
    city       text not null,
    address    text not null default '',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint theaters_name_check check (length(name) between 1 and 200),
    constraint theaters_city_check check (length(city) between 1 and 100)
);
create index theaters_city_idx on theaters (lower(city));

create table screens (
    id         uuid primary key,
    -- a theater with screens cannot be deleted: delete (or keep) its screens first
    theater_id uuid not null references theaters (id) on delete restrict,
    name       text not null,
    created_at timestamptz not null default now(),
    constraint screens_theater_name_key unique (theater_id, name),
    constraint screens_name_check check (length(name) between 1 and 100)
);

-- One row per physical seat. A screen's layout never changes once created (tickets point at
-- seats); a new layout is a new screen.
create table seats (
    id         uuid primary key,
    screen_id  uuid not null references screens (id) on delete cascade,
    row_label  text not null,
    number     integer not null,
    category   text not null,
    -- display order of the row within the screen, 0-based
    row_index  integer not null,
    constraint seats_screen_row_number_key unique (screen_id, row_label, number),
    constraint seats_number_check check (number >= 1),
    constraint seats_category_check check (category ~ '^[a-z][a-z0-9_]{0,31}$')
);

create type showtime_status as enum ('scheduled', 'cancelled');

create table showtimes (
    id         uuid primary key,
    movie_id   uuid not null references movies (id) on delete restrict,
    screen_id  uuid not null references screens (id) on delete restrict,
    starts_at  timestamptz not null,
    ends_at    timestamptz not null,
    -- price per seat category in minor units: {"standard": 1200, "premium": 1800}
    prices     jsonb not null,
    currency   char(3) not null,
    status     showtime_status not null default 'scheduled',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint showtimes_time_check check (ends_at > starts_at),
    constraint showtimes_prices_check check (jsonb_typeof(prices) = 'object'),
    constraint showtimes_currency_check check (currency ~ '^[A-Z]{3}$'),
    -- Two scheduled showtimes never share a screen at the same time. Cancelled ones free the slot.
    constraint showtimes_no_overlap exclude using gist (
        screen_id with =,
        tstzrange(starts_at, ends_at) with &&
    ) where (status = 'scheduled')
);
create index showtimes_movie_idx on showtimes (movie_id, starts_at);
create index showtimes_starts_idx on showtimes (starts_at);
