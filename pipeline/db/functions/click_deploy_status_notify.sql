-- Live log viewers learn of state and progress changes at once: any change of a
-- deployment's status, step, progress message or cancel request is told on
-- click_deploy_status (payload: the deployment id), once per statement (a worker's batched
-- write changes up to one row per slot; a PL/pgSQL call per row cost more than the
-- notifications); heartbeats and lease renewals are not told.
CREATE OR REPLACE FUNCTION click_deploy_status_notify() RETURNS trigger LANGUAGE plpgsql AS $$
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
