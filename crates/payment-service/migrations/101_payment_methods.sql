-- Payment methods: a customer's card token, registered with
-- `POST /payment-methods` and named by an opaque id (`pm_<32 hex>`). Orders
-- and their events carry only the id; the token stays in this database,
-- which is why it is not on any topic.
CREATE TABLE payment_methods (
    id          TEXT        PRIMARY KEY,
    customer_id TEXT        NOT NULL,
    token       TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX payment_methods_customer ON payment_methods (customer_id);
