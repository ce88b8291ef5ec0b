-- The status notification (0005) once per statement instead of once per row: a worker's
-- batched write changes up to one row per slot, and a PL/pgSQL call per row cost more than
-- the notifications. Same channel, same payload (a deployment id), same conditions.

DROP TRIGGER deployments_status_notify ON deployments;
DROP FUNCTION click_deploy_status_notify();

CREATE FUNCTION click_deploy_status_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('click_deploy_status', n.id::text)
    FROM changed_new n JOIN changed_old o USING (id)
    WHERE o.status IS DISTINCT FROM n.status
       OR o.step IS DISTINCT FROM n.step
       OR o.progress_message IS DISTINCT FROM n.progress_message
       OR o.cancel_requested IS DISTINCT FROM n.cancel_requested;
    RETURN NULL;
END
$$;

CREATE TRIGGER deployments_status_notify AFTER UPDATE ON deployments
    REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION click_deploy_status_notify();

-- Enqueue supersedes only when something waits: an UPDATE that changes nothing still fires
-- the statement trigger above.
CREATE OR REPLACE FUNCTION click_deploy_enqueue(
    p_service_id bigint, p_environment text, p_ref text, p_commit_sha text,
    p_trigger jsonb, p_max_attempts integer
) RETURNS SETOF deployments LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint := nextval(pg_get_serial_sequence('deployments', 'id'));
BEGIN
    PERFORM click_deploy_target_lock(p_service_id, p_environment);
    IF EXISTS (SELECT 1 FROM deployments
               WHERE service_id = p_service_id AND environment = p_environment
                 AND status = 'queued') THEN
        UPDATE deployments
        SET status = 'superseded', superseded_by = new_id, finished_at = now(),
            updated_at = now(), progress_message = 'superseded by deployment ' || new_id::text
        WHERE service_id = p_service_id AND environment = p_environment AND status = 'queued';
    END IF;
    RETURN QUERY
        INSERT INTO deployments (id, service_id, environment, ref, commit_sha, trigger, max_attempts)
        VALUES (new_id, p_service_id, p_environment, p_ref, p_commit_sha, p_trigger, p_max_attempts)
        RETURNING *;
    PERFORM pg_notify('click_deploy_queue', new_id::text);
END
$$;
