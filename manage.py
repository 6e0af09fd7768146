#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mpesa_project.settings")
    from django.core.management import execute_from_command_line

    from mpesa_project.env import settings_or_exit

    # A missing or unreadable variable is one line naming it and the fix, not a traceback.
    settings_or_exit()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
