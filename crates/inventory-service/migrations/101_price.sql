-- The catalog price of a SKU: inventory is the catalog, and the order
-- service prices every order line from it (carried by InventoryAdjusted).
-- Existing SKUs stay unpriced until a PUT sets a price.
ALTER TABLE stock
    ADD COLUMN price    BIGINT CHECK (price > 0),
    ADD COLUMN currency TEXT   CHECK (currency ~ '^[A-Z]{3}$'),
    ADD CONSTRAINT stock_price_has_currency CHECK ((price IS NULL) = (currency IS NULL));
