-- Coalesced state changes: a job's moves through the build states (cloning -> building ->
-- pushing) are written with its next write, so one row version may record several. The
-- row's `phase` says how far the build got; a change may go forward through the build
-- states to `phase` and then take one legal step from there.
CREATE OR REPLACE FUNCTION click_deploy_steps_forward(p_from text, p_phase text, p_to text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    -- p_from and p_phase are build states with p_phase later; p_to is p_phase itself or a
    -- state that p_phase may go to (the build states' exits are spelled out: IMMUTABLE,
    -- and the transitions table lists the same).
    SELECT coalesce(
        array_position(ARRAY['cloning', 'building', 'pushing'], p_from)
            < array_position(ARRAY['cloning', 'building', 'pushing'], p_phase)
        AND (p_to = p_phase
             OR (p_phase = 'pushing' AND p_to IN ('succeeded', 'failed', 'cancelled', 'queued',
                                                 'superseded'))
             OR (p_phase = 'building' AND p_to IN ('failed', 'cancelled', 'queued',
                                                  'superseded'))),
        false)
$$;
