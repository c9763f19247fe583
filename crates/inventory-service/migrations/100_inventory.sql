-- Stock per SKU. `available + reserved + shipped` only changes through
-- `PUT /inventory/{sku}`; reservations, releases and dispatches move units
-- between the columns. The CHECKs are the last line of defence against
-- overselling.
CREATE TABLE stock (
    sku        TEXT        PRIMARY KEY,
    available  INT         NOT NULL CHECK (available >= 0),
    reserved   INT         NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    shipped    INT         NOT NULL DEFAULT 0 CHECK (shipped >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per order the service has seen: what was reserved (or why it
-- could not be) and what became of it.
CREATE TABLE reservations (
    order_id   TEXT        PRIMARY KEY,
    status     TEXT        NOT NULL
               CHECK (status IN ('RESERVED', 'RELEASED', 'SHIPPED', 'FAILED')),
    items      JSONB       NOT NULL,
    reason     TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
