"""The edge: validation of what comes in, and the file formats the registry keeps beside a
version."""
