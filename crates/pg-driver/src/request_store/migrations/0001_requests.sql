-- The access requests: indexed columns for lookups and listing, and the whole record
-- as jsonb. Runs inside the migration transaction, with search_path pinned to
-- pg_catalog, pg_temp; every name is qualified anyway.
CREATE TABLE pgwarden_requests.requests (
    id pg_catalog.text PRIMARY KEY,
    integration pg_catalog.text NOT NULL,
    requester pg_catalog.text NOT NULL,
    state pg_catalog.text NOT NULL CHECK (state OPERATOR(pg_catalog.=) ANY (ARRAY[
        'pending', 'approved', 'rejected', 'granted', 'revoking',
        'expired', 'revoked', 'failed', 'cancelled'
    ]::pg_catalog.text[])),
    created_at pg_catalog.timestamptz NOT NULL,
    updated_at pg_catalog.timestamptz NOT NULL,
    version pg_catalog.int8 NOT NULL CHECK (version OPERATOR(pg_catalog.>=) 1::pg_catalog.int8),
    record pg_catalog.jsonb NOT NULL
);

CREATE INDEX requests_created_idx
    ON pgwarden_requests.requests (created_at DESC, id COLLATE pg_catalog."C" DESC);
CREATE INDEX requests_integration_state_idx
    ON pgwarden_requests.requests (integration, state, created_at DESC);
CREATE INDEX requests_requester_idx
    ON pgwarden_requests.requests (requester, created_at DESC);
