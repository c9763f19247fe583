-- One row per order the shipping service has heard of.
--
-- A real shipment is CREATED by PaymentProcessed and moves on through
-- DISPATCHED and DELIVERED by HTTP calls, or ends CANCELLED when the order
-- is cancelled before dispatch. A cancellation that arrives before any
-- shipment leaves a VOIDED tombstone (no shipment data), so a later
-- PaymentProcessed for that order creates nothing.
CREATE TABLE shipments (
    order_id        text PRIMARY KEY,
    shipment_id     uuid UNIQUE,
    tracking_number text UNIQUE,
    carrier         text,
    label_url       text,
    status          text NOT NULL
                    CHECK (status IN ('CREATED', 'DISPATCHED', 'DELIVERED', 'CANCELLED', 'VOIDED')),
    recipient       jsonb,
    email           text,
    items           jsonb,
    correlation_id  text NOT NULL,
    last_event_id   uuid NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    dispatched_at   timestamptz,
    delivered_at    timestamptz,
    -- Everything but a tombstone is a real shipment with all its data.
    CONSTRAINT shipment_data_present CHECK (
        status = 'VOIDED' OR (
            shipment_id IS NOT NULL AND tracking_number IS NOT NULL AND carrier IS NOT NULL
            AND label_url IS NOT NULL AND recipient IS NOT NULL AND email IS NOT NULL
            AND items IS NOT NULL
        )
    ),
    CONSTRAINT dispatched_at_present CHECK (
        status NOT IN ('DISPATCHED', 'DELIVERED') OR dispatched_at IS NOT NULL
    ),
    CONSTRAINT delivered_at_present CHECK (status <> 'DELIVERED' OR delivered_at IS NOT NULL)
);
