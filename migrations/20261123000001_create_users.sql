-- Accounts. Emails are stored lower-cased and trimmed by the application, so a plain unique
-- constraint is enough to refuse a second account for the same address.
create type user_role as enum ('user', 'admin');

create table users (
    id            uuid primary key,
    email         text not null,
    name          text not null,
    -- argon2id PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash)
    password_hash text not null,
    role          user_role not null default 'user',
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint users_email_key unique (email),
    constraint users_email_check check (email = lower(email) and length(email) between 3 and 254),
    constraint users_name_check check (length(name) between 1 and 100)
);
