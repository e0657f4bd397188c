"""flow core engine."""
