-- Decides reports_to_slack again for the unfinished deployments of a service whose
-- slack_channel changes.
CREATE OR REPLACE FUNCTION click_deploy_service_slack_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE deployments
    SET reports_to_slack = click_deploy_reports_to_slack(trigger, service_id)
    WHERE service_id = NEW.id
      AND status NOT IN ('succeeded', 'failed', 'cancelled', 'superseded');
    RETURN NULL;
END
$$;
