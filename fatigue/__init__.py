"""The relevance and fatigue governor: whether to send, what, and when."""
