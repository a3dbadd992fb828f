-- Money moves only after its guard is won, part 2 (the enum values of part 1 are committed now).

-- The reconciler's work list: payments that may hold money without a ticket.
create index payments_unsettled_idx on payments (updated_at) where status in ('charging', 'refunding');

-- The payment token is only needed until the gateway has answered: afterwards it is cleared, so
-- the database keeps no usable card token of a settled payment.
alter table payments alter column payment_token drop not null;

-- The simulated gateway: a refund of a payment id it never charged voids that id, as a real
-- gateway's cancelled payment intent, so a charge arriving later is refused, never taken.
alter table gateway_charges drop constraint gateway_charges_status_check;
alter table gateway_charges add constraint gateway_charges_status_check
    check (status in ('pending', 'charged', 'declined', 'refunded', 'voided'));

-- Every RabbitMQ message goes through the outbox now (payment and refund tasks as well as
-- booking events): the routing key says which queue it is for.
comment on table outbox is 'messages staged in the transaction that causes them; published after commit, relayed by the sweeper';

-- Payment tasks that failed for good (or could not be decoded), drained from `payments.dead` by
-- the sweeper so operators can see them and alert on them. The payment itself is settled by its
-- state: the reservation expires at its deadline and the reconciler refunds any charge.
create table dead_letters (
    message_id  uuid primary key,
    queue       text not null,
    payment_id  uuid,
    attempts    integer not null,
    payload     jsonb not null,
    created_at  timestamptz not null default now()
);
create index dead_letters_created_idx on dead_letters (created_at desc);
