-- The inbox is pruned by age (`inbox::prune`): a BRIN index on the time a
-- row was written finds the old ones without a scan of the table, and costs
-- next to nothing to keep up, since rows arrive in time order.
CREATE INDEX IF NOT EXISTS inbox_processed_at ON inbox USING brin (processed_at);
