"""Reporting back where a deployment came from, driven by the outbox: a database trigger
queues one pending row per deployment and forge whenever its state or progress changes;
a loop in the serve process claims due rows, renders the deployment's current state,
sends it, and marks the row delivered or tries again later. A report never fails a build."""
