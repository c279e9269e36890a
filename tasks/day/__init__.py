"""The day: one engine that reads, computes, writes and reports a batch day, and the Prefect
tasks around it. The top layer of tasks/."""
