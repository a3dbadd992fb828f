-- Sale settings of a showtime (DESIGN.md §6a): when holds open, and whether a virtual waiting
-- room admits buyers at a rate. No row = on sale now, no queue (as before this table existed).
-- The row is mirrored into Redis (`<prefix>:{st:<id>}:sale`) so that hold.lua decides
-- "sale not open" and "not admitted" in the same script that takes the seats.
create type sale_queue_status as enum ('running', 'paused');
create type sale_admission as enum ('enforced', 'fail_open');

create table showtime_sales (
    showtime_id       uuid primary key references showtimes (id) on delete cascade,
    opens_at          timestamptz not null,
    -- queue settings: all null when the sale has no waiting room
    admit_per_minute  integer,
    admission_minutes integer,
    queue_status      sale_queue_status,
    -- 'fail_open' lets every signed-in user hold while the queue is in trouble (docs/ONSALE.md)
    admission         sale_admission not null default 'enforced',
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    constraint showtime_sales_queue_check check (
        (admit_per_minute is null and admission_minutes is null and queue_status is null)
        or (admit_per_minute is not null and admission_minutes is not null and queue_status is not null)
    ),
    constraint showtime_sales_rate_check check (admit_per_minute between 1 and 1000000),
    constraint showtime_sales_window_check check (admission_minutes between 1 and 1440)
);
