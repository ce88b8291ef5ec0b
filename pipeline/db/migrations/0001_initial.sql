-- click-deploy: initial schema.
-- The deployments table is the queue; see DESIGN.md for the state machine.

CREATE TABLE services (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE
                CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    provider    text NOT NULL DEFAULT 'git' CHECK (provider IN ('github', 'gitlab', 'git')),
    -- "owner/name" for a forge, or a clone URL for plain git.
    repository  text NOT NULL CHECK (repository <> ''),
    branch      text NOT NULL DEFAULT 'main' CHECK (branch <> ''),
    root_dir    text NOT NULL DEFAULT '.',
    -- Everything else a service can be told (build settings, previews, allowlists).
    config      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- One repository and branch may hold several services (a monorepo).
CREATE INDEX services_by_repository ON services (provider, repository, branch);

-- The allowed state changes, as data: the trigger below refuses any other.
CREATE TABLE deployment_transitions (
    from_status text NOT NULL,
    to_status   text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);
INSERT INTO deployment_transitions (from_status, to_status) VALUES
    ('queued', 'cloning'), ('queued', 'superseded'), ('queued', 'cancelled'),
    ('cloning', 'building'), ('cloning', 'failed'), ('cloning', 'cancelled'),
    ('cloning', 'queued'), ('cloning', 'superseded'),
    ('building', 'pushing'), ('building', 'failed'), ('building', 'cancelled'),
    ('building', 'queued'), ('building', 'superseded'),
    ('pushing', 'succeeded'), ('pushing', 'failed'), ('pushing', 'cancelled'),
    ('pushing', 'queued'), ('pushing', 'superseded');

CREATE TABLE deployments (
    id                bigserial PRIMARY KEY,
    service_id        bigint NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    -- "production" or a preview such as "pr-12".
    environment       text NOT NULL DEFAULT 'production' CHECK (environment <> ''),
    ref               text,
    commit_sha        text,
    status            text NOT NULL DEFAULT 'queued' CHECK (status IN (
                          'queued', 'cloning', 'building', 'pushing',
                          'succeeded', 'failed', 'cancelled', 'superseded')),
    -- Who asked and where to answer (a Trigger, as JSON).
    trigger           jsonb NOT NULL DEFAULT '{}'::jsonb,
    attempts          integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    run_at            timestamptz NOT NULL DEFAULT now(),
    -- The lease: who runs it, a token that fences out a worker that lost it, and until when.
    worker_id         text,
    lease_token       uuid,
    lease_expires_at  timestamptz,
    heartbeat_at      timestamptz,
    cancel_requested  boolean NOT NULL DEFAULT false,
    -- Deferred: enqueue marks older requests superseded before inserting the new row.
    superseded_by     bigint REFERENCES deployments (id) ON DELETE SET NULL
                      DEFERRABLE INITIALLY DEFERRED,
    -- Progress: phase, step i of n, and a line for people.
    phase             text,
    step              integer,
    steps_total       integer,
    progress_message  text,
    image             text,
    error             text,
    error_kind        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- At most one active deployment per service and environment, enforced here, not only by
-- the claim query.
CREATE UNIQUE INDEX deployments_one_active ON deployments (service_id, environment)
    WHERE status IN ('cloning', 'building', 'pushing');
-- At most one waiting deployment per target: a newer request supersedes the older one.
CREATE UNIQUE INDEX deployments_one_queued ON deployments (service_id, environment)
    WHERE status = 'queued';
CREATE INDEX deployments_claimable ON deployments (run_at, id) WHERE status = 'queued';
CREATE INDEX deployments_by_service ON deployments (service_id, id DESC);
CREATE INDEX deployments_by_status ON deployments (status, id DESC);
CREATE INDEX deployments_leases ON deployments (lease_expires_at)
    WHERE status IN ('cloning', 'building', 'pushing');

CREATE FUNCTION deployments_check_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT EXISTS (
        SELECT 1 FROM deployment_transitions
        WHERE from_status = OLD.status AND to_status = NEW.status
    ) THEN
        RAISE EXCEPTION 'deployment % cannot go from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER deployments_transition BEFORE UPDATE OF status ON deployments
    FOR EACH ROW EXECUTE FUNCTION deployments_check_transition();

-- Build output, one row a line; seq is the cursor for streaming readers.
CREATE TABLE deployment_logs (
    deployment_id  bigint NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    seq            bigint NOT NULL,
    at             timestamptz NOT NULL DEFAULT now(),
    stream         text NOT NULL DEFAULT 'stdout',
    line           text NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);

-- Every webhook delivery we acknowledged, deduplicated by the sender's delivery id.
CREATE TABLE webhook_deliveries (
    source          text NOT NULL,
    delivery_id     text NOT NULL,
    event           text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    outcome         text,
    deployment_ids  bigint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (source, delivery_id)
);

-- API tokens: only a hash is kept; the prefix helps people tell tokens apart.
CREATE TABLE api_tokens (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    scope         text NOT NULL CHECK (scope IN ('read', 'deploy', 'admin')),
    token_hash    bytea NOT NULL UNIQUE,
    token_prefix  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

-- Reports to forges and chat, written in the same transaction as the change they report.
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    deployment_id  bigint REFERENCES deployments (id) ON DELETE CASCADE,
    target         text NOT NULL,
    kind           text NOT NULL,
    payload        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    available_at   timestamptz NOT NULL DEFAULT now(),
    attempts       integer NOT NULL DEFAULT 0,
    delivered_at   timestamptz,
    last_error     text
);
CREATE INDEX outbox_pending ON outbox (target, available_at) WHERE delivered_at IS NULL;
