-- The build pipeline: image digests, the steps of every attempt, and each target's image.

ALTER TABLE deployments ADD COLUMN digest text;

-- One row per pipeline step (clone, plan, build, push, verify) and per BuildKit step, so
-- people and reporters see what ran, what was cached and how long each took.
CREATE TABLE deployment_steps (
    deployment_id  bigint NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    attempt        integer NOT NULL,
    seq            integer NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('pipeline', 'build')),
    name           text NOT NULL,
    status         text NOT NULL CHECK (status IN ('running', 'done', 'cached', 'failed')),
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    seconds        double precision,
    detail         text,
    PRIMARY KEY (deployment_id, attempt, seq)
);

-- What runs where: the image each service and environment got from its last success.
CREATE TABLE service_images (
    service_id     bigint NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    environment    text NOT NULL,
    deployment_id  bigint NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    image          text NOT NULL,
    digest         text,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service_id, environment)
);
