-- Transactional outbox: events are inserted in the same transaction as the
-- state change that produced them and published by the relay in `id` order.
CREATE TABLE IF NOT EXISTS outbox (
    id            BIGSERIAL PRIMARY KEY,
    event_id      UUID        NOT NULL UNIQUE,
    event_type    TEXT        NOT NULL,
    topic         TEXT        NOT NULL,
    partition_key TEXT        NOT NULL,
    envelope      JSONB       NOT NULL,
    headers       JSONB       NOT NULL DEFAULT '{}'::jsonb,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Rows the relay could not encode (a bug, never expected): kept for
-- inspection instead of blocking the outbox or being dropped.
CREATE TABLE IF NOT EXISTS outbox_failed (
    id            BIGINT      PRIMARY KEY,
    event_id      UUID        NOT NULL,
    event_type    TEXT        NOT NULL,
    topic         TEXT        NOT NULL,
    partition_key TEXT        NOT NULL,
    envelope      JSONB       NOT NULL,
    headers       JSONB       NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    failed_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    reason        TEXT        NOT NULL
);
