-- A paid saga past its deadline is not cancelled (that would refund an
-- order that is still going to ship): it is marked stalled until its next
-- step arrives. Most orders never stall, so the index is partial.
ALTER TABLE orders ADD COLUMN stalled_at TIMESTAMPTZ;
CREATE INDEX orders_stalled ON orders (status) WHERE stalled_at IS NOT NULL;
