-- Wake the relay when events are queued: a NOTIFY per inserted row, which
-- PostgreSQL delivers at commit and folds into one per transaction. Any
-- INSERT into the outbox wakes it, also one that is part of a larger
-- statement.
CREATE OR REPLACE FUNCTION orderflow_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('orderflow_outbox', '');
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION orderflow_outbox_notify();
