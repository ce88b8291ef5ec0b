-- Releases: what runs where for each environment of a service (pipeline/release), and the
-- live URL a deployment put into service.

ALTER TABLE deployments ADD COLUMN live_url text;

CREATE TABLE releases (
    id             bigserial PRIMARY KEY,
    service_id     bigint NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    environment    text NOT NULL,
    deployment_id  bigint REFERENCES deployments (id) ON DELETE SET NULL,
    target         text NOT NULL CHECK (target IN ('docker', 'swarm', 'webhook')),
    image          text NOT NULL,
    digest         text NOT NULL,
    engine         text,            -- the Docker engine (docker, swarm)
    runs_as        text NOT NULL,   -- container id, Swarm service name, or the hook
    url            text,            -- where it answers (docker, swarm)
    healthy        boolean NOT NULL DEFAULT true,
    started_at     timestamptz NOT NULL DEFAULT now(),
    stopped_at     timestamptz
);

-- At most one live release per environment: the switch ends the old one and records the
-- new one in one transaction.
CREATE UNIQUE INDEX releases_one_live ON releases (service_id, environment)
    WHERE stopped_at IS NULL;
CREATE INDEX releases_by_deployment ON releases (deployment_id);
