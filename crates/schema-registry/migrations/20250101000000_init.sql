-- Schemas are global: one row per distinct normalised Avro schema, shared by
-- every subject that registers it (Confluent reuses ids across subjects).
CREATE TABLE schemas (
    id          SERIAL PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    schema_text TEXT NOT NULL,
    schema_type TEXT NOT NULL DEFAULT 'AVRO'
);

-- One row per (subject, version). Deletes are soft by default, as in
-- Confluent: a deleted version keeps its number so numbering never restarts.
CREATE TABLE subject_versions (
    subject    TEXT    NOT NULL,
    version    INTEGER NOT NULL CHECK (version > 0),
    schema_id  INTEGER NOT NULL REFERENCES schemas (id),
    deleted    BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (subject, version)
);

CREATE INDEX subject_versions_schema_id_idx ON subject_versions (schema_id);

-- Compatibility levels; the empty subject '' holds the global level.
CREATE TABLE config (
    subject       TEXT PRIMARY KEY,
    compatibility TEXT NOT NULL
);
