"""One module per ``worldrl`` subcommand.

Each module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Modules import heavy dependencies inside ``run`` so that
``worldrl --help`` stays fast. Add a command by adding its module name here.
"""

COMMANDS = ("envs", "demo", "pipeline", "collect", "curate", "train-oracle", "train-tokenizer", "train-video-model",
            "viper-report", "train-agent", "evaluate")
