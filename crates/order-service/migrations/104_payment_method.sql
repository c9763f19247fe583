-- Orders name a payment method registered with the payment service
-- (`pm_...`) instead of carrying a card token. Orders placed before keep
-- their token; new ones have none.
ALTER TABLE orders ADD COLUMN payment_method_id TEXT;
ALTER TABLE orders ALTER COLUMN payment_token DROP NOT NULL;
