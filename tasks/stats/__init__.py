"""Statistics: the reference profile and the drift tests, pure functions over arrays. The bottom
layer of tasks/."""
