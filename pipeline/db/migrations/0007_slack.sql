-- Slack (bot/slack): a pending outbox row with target 'slack' per deployment whenever its
-- state or progress changes, for deployments asked for from Slack (trigger.answer.slack)
-- and for every deployment of a service announced in a channel (config.slack_channel);
-- coalesced like the forges' rows. And the message (and thread replies) each one got, so
-- later updates edit them.

CREATE UNIQUE INDEX outbox_one_pending_slack ON outbox (deployment_id)
    WHERE delivered_at IS NULL AND target = 'slack';

CREATE FUNCTION click_deploy_outbox_slack() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- coalesce: without an answer object the test is NULL, and NOT NULL is not true.
    IF NOT coalesce(jsonb_typeof(NEW.trigger -> 'answer') = 'object'
                    AND NEW.trigger -> 'answer' ? 'slack', false)
       AND NOT EXISTS (SELECT 1 FROM services
                       WHERE id = NEW.service_id
                         AND jsonb_typeof(config -> 'slack_channel') = 'string') THEN
        RETURN NULL;
    END IF;
    INSERT INTO outbox (deployment_id, target, kind) VALUES (NEW.id, 'slack', 'deployment')
    ON CONFLICT (deployment_id) WHERE delivered_at IS NULL AND target = 'slack'
    DO UPDATE SET changes = outbox.changes + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER deployments_outbox_slack_insert AFTER INSERT ON deployments
    FOR EACH ROW EXECUTE FUNCTION click_deploy_outbox_slack();
CREATE TRIGGER deployments_outbox_slack_update AFTER UPDATE ON deployments
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       OR OLD.step IS DISTINCT FROM NEW.step)
    EXECUTE FUNCTION click_deploy_outbox_slack();

-- The live message of a deployment: its channel and ts, the thread reply holding the
-- steps (edited too), whether the failure's log tail went out, and what was last sent.
CREATE TABLE slack_messages (
    deployment_id  bigint PRIMARY KEY REFERENCES deployments (id) ON DELETE CASCADE,
    channel        text NOT NULL,
    ts             text NOT NULL,
    steps_ts       text,
    tail_posted    boolean NOT NULL DEFAULT false,
    sent_status    text,
    sent_at        timestamptz
);
