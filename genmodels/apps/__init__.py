"""Applications of density estimation built on ``Model``: anomaly detection, imputation,
out-of-distribution checks and augmentation. Each module is one tool; those with a command
register it through ``add_cli(subparsers)`` (listed in ``genmodels.cli.APP_COMMANDS``)."""
