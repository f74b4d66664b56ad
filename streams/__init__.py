"""vitals stream processing: Faust app, agents, per-user state and rules."""
