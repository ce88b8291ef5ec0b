"""Live logs through a team's own Centrifugo: the publisher (one per process, one leader
publishing), subscription tokens for browsers, and the readiness check."""
