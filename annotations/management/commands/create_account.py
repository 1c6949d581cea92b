"""manage.py create_account USERNAME --email E --role R [--password-stdin]: an account made by an admin."""

import getpass
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotations.models import Profile
from annotations.services.accounts import account_create


class Command(BaseCommand):
    help = "Create an account (audited). The password is read from stdin or a prompt, never from arguments."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--email", required=True)
        parser.add_argument("--role", required=True, choices=Profile.Role.values)
        parser.add_argument("--password-stdin", action="store_true", help="Read the password from standard input.")
        parser.add_argument(
            "--no-password", action="store_true", help="Create the account without a usable password (invite later)."
        )

    def handle(self, *args, username: str, email: str, role: str, password_stdin: bool, no_password: bool, **opts):
        password = None
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        elif not no_password:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The passwords differ.")
        try:
            user = account_create(username=username, email=email, role=role, password=password, actor=None)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"Created {role} account {user.get_username()}.")
