-- Transactional outbox for booking events. A booking event is written here in the same
-- transaction as the state change it reports (booking confirmed, reservation failed, expired or
-- cancelled), then published to RabbitMQ and deleted. If the broker is down, or the process dies
-- between the commit and the publish, the row stays and the sweeper publishes it later, so no
-- notification is lost. Consumers deduplicate by message_id (notifications' primary key).
create table outbox (
    message_id  uuid primary key,
    routing_key text not null,
    payload     jsonb not null,
    created_at  timestamptz not null default now(),
    -- failed publish attempts, for the log and for operators
    attempts    integer not null default 0
);
create index outbox_created_idx on outbox (created_at);
