-- Enqueue in one round trip (the hot path): lock the target, supersede the request waiting
-- for it (only when one waits: an UPDATE that changes nothing still fires the statement
-- trigger of click_deploy_status_notify), insert, NOTIFY click_deploy_queue.
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
