-- A pending outbox row per deployment and forge (GitHub, GitLab) whenever the deployment's
-- state or progress changes, coalesced: one pending row per deployment and target, and
-- `changes` counts what arrived since it was claimed.
CREATE OR REPLACE FUNCTION click_deploy_outbox_forges() RETURNS trigger LANGUAGE plpgsql AS $$
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
