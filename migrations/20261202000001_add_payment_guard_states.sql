-- Money moves only after its guard is won (docs/DESIGN.md, "The ledger").
--
-- `charging`: a worker won the right to call the gateway's charge for this payment (from
-- `initiated`, while its reservation is still `payment_pending`). The sweeper never fails a
-- payment in `charging`: money may be on its way, so the worker or the reconciler settles it.
-- `refunding`: someone won the right to give the money back; the gateway's refund is called only
-- after this update committed, and `refunded` (or `failed`, if nothing had been charged) is
-- recorded after it. A crash in between leaves `refunding` for the reconciler to finish.
-- New enum values cannot be used in the transaction that adds them: what uses them is in the
-- next migration.
alter type payment_status add value if not exists 'charging' after 'initiated';
alter type payment_status add value if not exists 'refunding' after 'failed';
