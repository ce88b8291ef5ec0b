-- click-deploy: live log viewers learn of state and progress changes at once.
-- Any change of a deployment's status or progress is told on click_deploy_status (payload:
-- the deployment id), whichever statement made it; heartbeats and lease renewals are not.

CREATE FUNCTION click_deploy_status_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('click_deploy_status', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER deployments_status_notify AFTER UPDATE ON deployments
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.step IS DISTINCT FROM NEW.step
          OR OLD.progress_message IS DISTINCT FROM NEW.progress_message
          OR OLD.cancel_requested IS DISTINCT FROM NEW.cancel_requested)
    EXECUTE FUNCTION click_deploy_status_notify();
