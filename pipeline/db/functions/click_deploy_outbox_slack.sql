-- A pending Slack outbox row for a deployment that reports to Slack (the trigger's WHEN
-- condition tests deployments.reports_to_slack), coalesced like the forges' rows.
CREATE OR REPLACE FUNCTION click_deploy_outbox_slack() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (deployment_id, target, kind) VALUES (NEW.id, 'slack', 'deployment')
    ON CONFLICT (deployment_id) WHERE delivered_at IS NULL AND target = 'slack'
    DO UPDATE SET changes = outbox.changes + 1;
    RETURN NULL;
END
$$;
