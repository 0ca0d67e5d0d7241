"""`archbot eval`: scenario files, rubric checks decided by code, an optional model judge,
a runner that drives the real consultant core, and the score report."""
