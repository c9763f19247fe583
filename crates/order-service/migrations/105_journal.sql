-- The order journal: every event of the saga's topics, as the log holds
-- it, by correlation id. A projection fed by its own consumer group
-- (`order-service.journal`), so `orderctl replay --projection order-journal`
-- can rebuild it from the topics into `order_journal_next` and swap the two
-- tables. Nothing in a row depends on when it was projected: a rebuilt
-- journal equals the live one. Index names are fixed because the swap
-- exchanges them too.
CREATE TABLE IF NOT EXISTS order_journal (
    event_id        UUID        NOT NULL,
    correlation_id  TEXT        NOT NULL,
    causation_id    UUID,
    event_type      TEXT        NOT NULL,
    event_version   INT         NOT NULL,
    source          TEXT        NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    topic           TEXT        NOT NULL,
    kafka_partition INT         NOT NULL,
    kafka_offset    BIGINT      NOT NULL,
    record_key      TEXT,
    CONSTRAINT order_journal_pkey PRIMARY KEY (event_id)
);
CREATE INDEX IF NOT EXISTS order_journal_correlation_idx
    ON order_journal (correlation_id, occurred_at);

CREATE TABLE IF NOT EXISTS order_journal_next (
    LIKE order_journal INCLUDING DEFAULTS,
    CONSTRAINT order_journal_next_pkey PRIMARY KEY (event_id)
);
CREATE INDEX IF NOT EXISTS order_journal_next_correlation_idx
    ON order_journal_next (correlation_id, occurred_at);
