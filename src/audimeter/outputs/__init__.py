"""The outputs of the session journal: each reads it from its own cursor (see `base`)."""
