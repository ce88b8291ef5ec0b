-- Forges and reporting (GitHub, GitLab): a pending outbox row per deployment and forge
-- whenever the deployment's state or progress changes (coalesced: one pending row per
-- deployment and target, `changes` counts what arrived since it was claimed), what was
-- last sent for each deployment, and the one PR comment per pull request.

ALTER TABLE outbox ADD COLUMN changes integer NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX outbox_one_pending_forge ON outbox (deployment_id, target)
    WHERE delivered_at IS NULL AND target IN ('github', 'gitlab');

CREATE FUNCTION click_deploy_outbox_forges() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    forge text;
BEGIN
    FOR forge IN
        SELECT key FROM jsonb_object_keys(NEW.trigger -> 'answer') AS key
        WHERE key IN ('github', 'gitlab')
    LOOP
        INSERT INTO outbox (deployment_id, target, kind) VALUES (NEW.id, forge, 'deployment')
        ON CONFLICT (deployment_id, target) WHERE delivered_at IS NULL
                                             AND target IN ('github', 'gitlab')
        DO UPDATE SET changes = outbox.changes + 1;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER deployments_outbox_forges_insert AFTER INSERT ON deployments
    FOR EACH ROW WHEN (jsonb_typeof(NEW.trigger -> 'answer') = 'object'
                       AND NEW.trigger -> 'answer' ?| ARRAY['github', 'gitlab'])
    EXECUTE FUNCTION click_deploy_outbox_forges();
CREATE TRIGGER deployments_outbox_forges_update AFTER UPDATE ON deployments
    FOR EACH ROW WHEN (jsonb_typeof(NEW.trigger -> 'answer') = 'object'
                       AND NEW.trigger -> 'answer' ?| ARRAY['github', 'gitlab']
                       AND (OLD.status IS DISTINCT FROM NEW.status
                            OR OLD.step IS DISTINCT FROM NEW.step))
    EXECUTE FUNCTION click_deploy_outbox_forges();

-- What a forge was last told about a deployment: its check run (GitHub) and when.
CREATE TABLE forge_reports (
    deployment_id  bigint NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    target         text NOT NULL,
    remote_id      bigint,
    sent_status    text,
    sent_at        timestamptz,
    reacted        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (deployment_id, target)
);

-- The one comment per pull (merge) request, edited in place.
CREATE TABLE forge_pr_comments (
    target      text NOT NULL,
    repository  text NOT NULL,
    pr          integer NOT NULL,
    comment_id  bigint,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, repository, pr)
);

-- A pull request's deployments, for its comment and /deploy status and cancel.
CREATE INDEX deployments_by_github_pr ON deployments (
    (trigger -> 'answer' -> 'github' ->> 'repo'), ((trigger -> 'answer' -> 'github' ->> 'pr')), id
) WHERE trigger -> 'answer' ? 'github';
