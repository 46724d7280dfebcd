-- The event stream reads events by transaction, then id (see the store's
-- events module). One index in that order serves it, where two (ids, and
-- transactions) did: every event written costs one index entry fewer, and
-- the stream pages through a long history by index range instead of
-- sorting it. An event's id stays unique (it is an identity); pruning finds
-- rows by their age.
ALTER TABLE procvisor_events DROP CONSTRAINT procvisor_events_pkey;
DROP INDEX procvisor_events_tx;
ALTER TABLE procvisor_events ADD CONSTRAINT procvisor_events_pkey PRIMARY KEY (tx, id);
