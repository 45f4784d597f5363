-- Migration of an rt_batches made before journal epochs (ringtracker
-- before issue 20): run once, as a user allowed to ALTER it, before
-- starting the new tracker. Rows already there keep epoch 0, which is the
-- epoch of a credit journal made before epochs: such a journal goes on
-- where it was, and a new journal (a new epoch) starts its numbers afresh
-- without meeting them.
ALTER TABLE rt_batches
    ADD COLUMN epoch BIGINT UNSIGNED NOT NULL DEFAULT 0 AFTER node,
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (node, epoch, batch);
