"""Performance: the as-of label window, realized metrics, and the estimate before labels."""
