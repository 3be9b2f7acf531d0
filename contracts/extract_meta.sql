-- The extract.duckdb contract: _meta (required).  SPEC §7.
-- Column names, order and types are the contract; changing them is a breaking change.
-- One row per table the extract publishes.  query_mode 'local' rows need a same-named
-- view or table in the same file that can be read (use absolute paths in read_parquet).
CREATE TABLE _meta (
    table_name   VARCHAR NOT NULL,  -- ^[A-Za-z_][A-Za-z0-9_]{0,63}$; the table's id everywhere in Agnes
    description  VARCHAR,
    rows         BIGINT,            -- 0 for remote tables
    size_bytes   BIGINT,            -- 0 for remote tables
    extracted_at TIMESTAMP,         -- UTC
    query_mode   VARCHAR DEFAULT 'local'  -- 'local' | 'remote'
);
