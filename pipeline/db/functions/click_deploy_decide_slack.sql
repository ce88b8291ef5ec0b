-- Decides deployments.reports_to_slack once, when a deployment is created.
CREATE OR REPLACE FUNCTION click_deploy_decide_slack() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- click_deploy_reports_to_slack written out: a SQL function called from PL/pgSQL is
    -- set up anew on every call, which costs more than the test itself.
    NEW.reports_to_slack := coalesce(jsonb_typeof(NEW.trigger -> 'answer') = 'object'
                                     AND NEW.trigger -> 'answer' ? 'slack', false)
        OR EXISTS (SELECT 1 FROM services
                   WHERE id = NEW.service_id
                     AND jsonb_typeof(config -> 'slack_channel') = 'string');
    RETURN NEW;
END
$$;
