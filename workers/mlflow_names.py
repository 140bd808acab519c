"""What a hand-off to MLflow is named: the default experiment and the patterns an experiment and
a registered model must match, shared by the HTTP schema and the command line (which checks
them before MLflow, torch or the engine load)."""

DEFAULT_EXPERIMENT = "ridgerider"
REGISTERED_MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,199}$"
PRINTABLE_PATTERN = r"^[ -~]{1,200}$"
