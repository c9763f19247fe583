-- Inbox: one row per (consumer group, event) applied. Inserted in the same
-- transaction as the handler's effect, so a redelivered event is skipped.
CREATE TABLE IF NOT EXISTS inbox (
    consumer_group TEXT        NOT NULL,
    event_id       UUID        NOT NULL,
    event_type     TEXT        NOT NULL,
    topic          TEXT        NOT NULL,
    kafka_partition INT        NOT NULL,
    kafka_offset   BIGINT      NOT NULL,
    processed_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);
