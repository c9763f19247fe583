-- One row per order: the charge (PROCESSED or DECLINED), its refund
-- (REFUNDED), or a VOIDED tombstone left by a cancellation that came before
-- any charge, so that a later `InventoryReserved` charges nothing. The
-- primary key on `order_id` is what makes "never charged twice" hold under
-- concurrent handlers (`INSERT ... ON CONFLICT DO NOTHING`).
CREATE TABLE payments (
    order_id      TEXT        PRIMARY KEY,
    payment_id    UUID        NOT NULL UNIQUE,
    status        TEXT        NOT NULL
                  CHECK (status IN ('PROCESSED', 'DECLINED', 'REFUNDED', 'VOIDED')),
    amount        BIGINT      NOT NULL,
    -- NULL only for a VOIDED tombstone (the cancellation does not say).
    currency      TEXT,
    payment_token TEXT,
    decline_code  TEXT,
    reason        TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    refunded_at   TIMESTAMPTZ
);
