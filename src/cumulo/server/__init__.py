"""The control plane: app factory, auth, error handlers, start-up."""
