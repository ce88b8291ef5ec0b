-- Row triggers that cost nothing when they have nothing to do. Every state change of every
-- deployment ran two PL/pgSQL functions (the transition check, and the Slack outbox check,
-- which also looked the service up); a worker makes thousands of changes a second.

-- 1. The transition check is now the trigger's WHEN condition: a plain expression over the
--    row, so a legal change calls no function at all; only an illegal one runs the function,
--    to raise. The expression spells out deployment_transitions (a WHEN condition cannot
--    query a table); tests/test_coalesced_moves.py checks that the two agree.
CREATE FUNCTION click_deploy_move_allowed(p_from text, p_phase text, p_to text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT p_from || '>' || p_to = ANY (ARRAY[
               'queued>cloning', 'queued>superseded', 'queued>cancelled',
               'cloning>building', 'cloning>failed', 'cloning>cancelled', 'cloning>queued',
               'cloning>superseded',
               'building>pushing', 'building>failed', 'building>cancelled', 'building>queued',
               'building>superseded',
               'pushing>succeeded', 'pushing>failed', 'pushing>cancelled', 'pushing>queued',
               'pushing>superseded'])
        OR click_deploy_steps_forward(p_from, p_phase, p_to)
$$;

CREATE FUNCTION deployments_refuse_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'deployment % cannot go from % to %', OLD.id, OLD.status, NEW.status
        USING ERRCODE = 'check_violation';
END
$$;

DROP TRIGGER deployments_transition ON deployments;
CREATE TRIGGER deployments_transition BEFORE UPDATE OF status ON deployments
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          AND NOT click_deploy_move_allowed(OLD.status, NEW.phase, NEW.status))
    EXECUTE FUNCTION deployments_refuse_transition();
DROP FUNCTION deployments_check_transition();

-- 2. Whether a deployment reports to Slack is decided once, when it is created (asked for
--    from Slack, or its service announces in a channel), and again for the unfinished
--    deployments of a service whose configuration changes; the outbox triggers test the
--    column in their WHEN condition instead of calling a function that looks it up.
ALTER TABLE deployments ADD COLUMN reports_to_slack boolean NOT NULL DEFAULT false;

CREATE FUNCTION click_deploy_reports_to_slack(p_trigger jsonb, p_service_id bigint)
RETURNS boolean LANGUAGE sql STABLE AS $$
    -- coalesce: without an answer object the test is NULL.
    SELECT coalesce(jsonb_typeof(p_trigger -> 'answer') = 'object'
                    AND p_trigger -> 'answer' ? 'slack', false)
        OR EXISTS (SELECT 1 FROM services
                   WHERE id = p_service_id
                     AND jsonb_typeof(config -> 'slack_channel') = 'string')
$$;

CREATE FUNCTION click_deploy_decide_slack() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE TRIGGER deployments_decide_slack BEFORE INSERT ON deployments
    FOR EACH ROW EXECUTE FUNCTION click_deploy_decide_slack();

CREATE OR REPLACE FUNCTION click_deploy_outbox_slack() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (deployment_id, target, kind) VALUES (NEW.id, 'slack', 'deployment')
    ON CONFLICT (deployment_id) WHERE delivered_at IS NULL AND target = 'slack'
    DO UPDATE SET changes = outbox.changes + 1;
    RETURN NULL;
END
$$;
DROP TRIGGER deployments_outbox_slack_insert ON deployments;
DROP TRIGGER deployments_outbox_slack_update ON deployments;
CREATE TRIGGER deployments_outbox_slack_insert AFTER INSERT ON deployments
    FOR EACH ROW WHEN (NEW.reports_to_slack)
    EXECUTE FUNCTION click_deploy_outbox_slack();
CREATE TRIGGER deployments_outbox_slack_update AFTER UPDATE ON deployments
    FOR EACH ROW WHEN (NEW.reports_to_slack
                       AND (OLD.status IS DISTINCT FROM NEW.status
                            OR OLD.step IS DISTINCT FROM NEW.step))
    EXECUTE FUNCTION click_deploy_outbox_slack();

CREATE FUNCTION click_deploy_service_slack_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE deployments
    SET reports_to_slack = click_deploy_reports_to_slack(trigger, service_id)
    WHERE service_id = NEW.id
      AND status NOT IN ('succeeded', 'failed', 'cancelled', 'superseded');
    RETURN NULL;
END
$$;
CREATE TRIGGER services_slack_changed AFTER UPDATE OF config ON services
    FOR EACH ROW
    WHEN (OLD.config -> 'slack_channel' IS DISTINCT FROM NEW.config -> 'slack_channel')
    EXECUTE FUNCTION click_deploy_service_slack_changed();

UPDATE deployments SET reports_to_slack = click_deploy_reports_to_slack(trigger, service_id);
