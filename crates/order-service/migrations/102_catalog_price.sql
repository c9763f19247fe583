-- The catalog price of each SKU, from InventoryAdjusted: order lines are
-- priced from it, not by the client.
ALTER TABLE catalog ADD COLUMN price BIGINT, ADD COLUMN currency TEXT;
