-- Whether a deployment reports to Slack: asked for from Slack (trigger.answer.slack), or its
-- service announces in a channel (config.slack_channel).
CREATE OR REPLACE FUNCTION click_deploy_reports_to_slack(p_trigger jsonb, p_service_id bigint)
RETURNS boolean LANGUAGE sql STABLE AS $$
    -- coalesce: without an answer object the test is NULL.
    SELECT coalesce(jsonb_typeof(p_trigger -> 'answer') = 'object'
                    AND p_trigger -> 'answer' ? 'slack', false)
        OR EXISTS (SELECT 1 FROM services
                   WHERE id = p_service_id
                     AND jsonb_typeof(config -> 'slack_channel') = 'string')
$$;
