-- A customer's or the deadline's cancellation is a request until the
-- shipping service, the authority on dispatch, answers: the order waits in
-- CANCELLING, and cancel_from keeps the status it was asked in (so a refused
-- request resumes from there, and OrderCancelled names it).
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN ('PENDING',
    'INVENTORY_RESERVED', 'PAID', 'SHIPPING_CREATED', 'SHIPPED', 'DELIVERED', 'CANCELLING',
    'CANCELLED'));
ALTER TABLE orders ADD COLUMN cancel_from TEXT;
DROP INDEX orders_open_deadline_idx;
CREATE INDEX orders_open_deadline_idx ON orders (deadline_at)
    WHERE status IN ('PENDING', 'INVENTORY_RESERVED', 'PAID', 'SHIPPING_CREATED', 'CANCELLING');
