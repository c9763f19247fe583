-- Every e-mail the notification service sent, or failed to send for good,
-- one per order and kind. An e-mail that could not be sent yet (SMTP server
-- unreachable, 4xx) leaves no row: its event is retried.
CREATE TABLE notifications (
    id             uuid PRIMARY KEY,
    order_id       text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('ORDER_CONFIRMATION', 'ORDER_CANCELLED')),
    recipient      text NOT NULL,
    subject        text NOT NULL,
    status         text NOT NULL CHECK (status IN ('SENT', 'FAILED')),
    error          text,
    message_id     text NOT NULL,
    cause_event_id uuid NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, kind),
    CONSTRAINT failure_has_error CHECK (status = 'SENT' OR error IS NOT NULL)
);

-- `GET /notifications` without an order: the latest ones.
CREATE INDEX notifications_created_at_idx ON notifications (created_at DESC, id DESC);
