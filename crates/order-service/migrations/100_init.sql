-- Orders: the request as accepted, the saga status, and the facts learned
-- from the other services' events (the status is advanced from them).
CREATE TABLE IF NOT EXISTS orders (
    id               UUID        PRIMARY KEY,
    status           TEXT        NOT NULL CHECK (status IN ('PENDING', 'INVENTORY_RESERVED', 'PAID',
                                     'SHIPPING_CREATED', 'SHIPPED', 'DELIVERED', 'CANCELLED')),
    reason           TEXT,
    reason_code      TEXT,
    customer_id      TEXT        NOT NULL,
    email            TEXT        NOT NULL,
    currency         TEXT        NOT NULL,
    items            JSONB       NOT NULL,
    total            BIGINT      NOT NULL CHECK (total >= 0),
    shipping_address JSONB       NOT NULL,
    payment_token    TEXT        NOT NULL,
    -- facts
    reserved         BOOLEAN     NOT NULL DEFAULT false,
    paid             BOOLEAN     NOT NULL DEFAULT false,
    payment_id       TEXT,
    shipping_created BOOLEAN     NOT NULL DEFAULT false,
    tracking_number  TEXT,
    notified         BOOLEAN     NOT NULL DEFAULT false,
    dispatched       BOOLEAN     NOT NULL DEFAULT false,
    delivered        BOOLEAN     NOT NULL DEFAULT false,
    -- envelope metadata (userId, sessionId) copied onto every event we emit
    metadata         JSONB       NOT NULL DEFAULT '{}'::jsonb,
    -- Idempotency-Key of POST /orders and SHA-256 of the canonical request
    idempotency_key  TEXT        UNIQUE,
    request_hash     TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    deadline_at      TIMESTAMPTZ NOT NULL
);

CREATE INDEX IF NOT EXISTS orders_created_idx ON orders (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS orders_customer_created_idx ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS orders_status_created_idx ON orders (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS orders_open_deadline_idx ON orders (deadline_at)
    WHERE status IN ('PENDING', 'INVENTORY_RESERVED', 'PAID', 'SHIPPING_CREATED');

-- Every event of an order the service emitted or consumed.
CREATE TABLE IF NOT EXISTS order_timeline (
    event_id       UUID        PRIMARY KEY,
    seq            BIGSERIAL   NOT NULL,
    order_id       UUID        NOT NULL REFERENCES orders (id),
    event_type     TEXT        NOT NULL,
    source         TEXT        NOT NULL,
    correlation_id TEXT        NOT NULL,
    causation_id   UUID,
    occurred_at    TIMESTAMPTZ NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS order_timeline_order_idx ON order_timeline (order_id, seq);

-- SKUs learned from InventoryAdjusted; orders for other SKUs are refused.
CREATE TABLE IF NOT EXISTS catalog (
    sku         TEXT        PRIMARY KEY,
    available   INT         NOT NULL,
    adjusted_at TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
