-- purest's event store. Run with `search_path` set to the store's schema (purest does that), so
-- every name below lands in it and the function keeps it.

-- Every event, in one global order. `position` is the append transaction's id shifted left by 20
-- bits, plus the event's place in that transaction: readers take only positions below the oldest
-- transaction still running (see `read` in `postgres.rs`), so a transaction that commits late can
-- never be skipped by a reader that has moved on.
CREATE TABLE events (
    position       bigint      PRIMARY KEY,
    stream         text        NOT NULL,
    category       text        NOT NULL GENERATED ALWAYS AS (split_part(stream, '-', 1)) STORED,
    version        bigint      NOT NULL,
    id             text        NOT NULL,
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL,
    payload        jsonb       NOT NULL,
    metadata       jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT events_stream_version UNIQUE (stream, version),
    CONSTRAINT events_id UNIQUE (id)
);
CREATE INDEX events_category ON events (category, position);

-- Appends events to a stream in one round trip. `expected` is -1 for any version, 0 for a stream
-- with no events, otherwise the version its last event must have. A stale expectation raises
-- SQLSTATE PU409 with the stream's actual version as the message; more events in one transaction
-- than a position can number raises PU413.
CREATE FUNCTION append(
    p_stream text,
    p_expected bigint,
    p_ids text[],
    p_types text[],
    p_schema_versions integer[],
    p_payloads jsonb[],
    p_metadata jsonb[]
) RETURNS TABLE (stream_version bigint, first_position bigint)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    current_version bigint;
    base bigint;
    first bigint;
    n bigint := cardinality(p_ids);
BEGIN
    -- Writers of one stream take turns until they commit, so the version read below stays true
    -- (and a writer that expects any version never trips over another).
    PERFORM pg_advisory_xact_lock(hashtext(current_schema()), hashtext(p_stream));
    SELECT coalesce(max(e.version), 0) INTO current_version FROM events e WHERE e.stream = p_stream;
    IF p_expected >= 0 AND current_version <> p_expected THEN
        RAISE EXCEPTION USING ERRCODE = 'PU409', MESSAGE = current_version::text;
    END IF;
    base := (pg_current_xact_id()::text::bigint) << 20;
    SELECT coalesce(max(e.position) + 1, base) INTO first
        FROM events e WHERE e.position >= base AND e.position < base + 1048576;
    IF first + n > base + 1048576 THEN
        RAISE EXCEPTION USING ERRCODE = 'PU413', MESSAGE = 'more than 1048576 events in one transaction';
    END IF;
    INSERT INTO events (position, stream, version, id, event_type, schema_version, payload, metadata)
        SELECT first + e.o - 1, p_stream, current_version + e.o, e.i, e.t, e.s, e.p, e.m
        FROM unnest(p_ids, p_types, p_schema_versions, p_payloads, p_metadata) WITH ORDINALITY AS e(i, t, s, p, m, o);
    RETURN QUERY SELECT current_version + n, first;
END
$$;

-- The newest snapshot of each stream that has one.
CREATE TABLE snapshots (
    stream        text        PRIMARY KEY,
    version       bigint      NOT NULL,
    state_version integer     NOT NULL,
    state         jsonb       NOT NULL,
    taken_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- How far each reader (projection, outbox relay) has come, and a rebuild asked for.
CREATE TABLE checkpoints (
    name              text        PRIMARY KEY,
    category          text,
    position          bigint      NOT NULL DEFAULT 0,
    rebuild_requested boolean     NOT NULL DEFAULT false,
    updated_at        timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Messages a consumer has had its effect for: one row each, written in the effect's transaction.
CREATE TABLE inbox (
    consumer   text        NOT NULL,
    message_id text        NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (consumer, message_id)
);
