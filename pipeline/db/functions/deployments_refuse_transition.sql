-- Runs only for a change click_deploy_move_allowed refuses (the trigger's WHEN condition),
-- to raise.
CREATE OR REPLACE FUNCTION deployments_refuse_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'deployment % cannot go from % to %', OLD.id, OLD.status, NEW.status
        USING ERRCODE = 'check_violation';
END
$$;
