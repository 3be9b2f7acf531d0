-- The extract.duckdb contract: _remote_attach (optional).  SPEC §7.
-- Needed when views reference a remote catalog.  token_env is the NAME of an
-- environment variable holding the credential, never the credential itself.
CREATE TABLE _remote_attach (
    alias     VARCHAR,  -- catalog alias used inside the views, e.g. kbc, bq
    extension VARCHAR,  -- must be on the allowlist (AGNES_REMOTE_ATTACH_EXTENSIONS; default keboola,bigquery,postgres;
                    --  postgres = agnes' built-in postgres_query() table function, nothing is attached)
    url       VARCHAR,  -- ATTACH target
    token_env VARCHAR   -- '' or a variable on the allowlist (AGNES_REMOTE_ATTACH_TOKEN_ENVS)
);
