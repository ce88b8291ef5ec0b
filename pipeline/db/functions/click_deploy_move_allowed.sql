-- The transition check of the deployments_transition trigger's WHEN condition: a plain
-- expression over the row, so a legal change calls no PL/pgSQL function at all. It spells
-- out deployment_transitions (a WHEN condition cannot query a table);
-- tests/test_coalesced_moves.py checks that the two agree.
CREATE OR REPLACE FUNCTION click_deploy_move_allowed(p_from text, p_phase text, p_to text)
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
